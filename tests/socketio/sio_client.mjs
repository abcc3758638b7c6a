// The unmodified socket.io-client from npm in node, driven by a test over
// stdin/stdout (tests/integration/test_socketio.py): one JSON command per
// input line, one JSON event per output line, as sio_driver.mjs describes
// them, plus {"op": "exit"}.  It prints {"ev": "ready"} first.

import { io } from "socket.io-client";
import readline from "node:readline";
import { driver } from "./sio_driver.mjs";

const handle = driver(io, (ev) => process.stdout.write(JSON.stringify(ev)
                                                       + "\n"));
const rl = readline.createInterface({ input: process.stdin });

rl.on("line", (line) => {
    const cmd = JSON.parse(line);

    if (cmd.op === "exit") {
        handle({ op: "closeall" });
        process.exit(0);
    }
    handle(cmd);
});

rl.on("close", () => process.exit(0));
process.stdout.write(JSON.stringify({ ev: "ready" }) + "\n");

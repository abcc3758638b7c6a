"""scripts/run.sh tells the URL of the port lpgate really starts on: the
part that derives it runs alone with --print-url (no build, no database).
"""

import os
import subprocess

import pytest

from conftest import SRCDIR

RUN = os.path.join(SRCDIR, "scripts", "run.sh")


@pytest.mark.parametrize("args,port", [
    ([], 8072),
    (["-p", "9999"], 9999),
    (["-p9998"], 9998),
    (["--port=9997"], 9997),
    (["--port", "9996"], 9996),
    (["--workers", "2", "-p", "1", "-d", "x", "--port=9995"], 9995),
    (["-d", "lpgate", "--timeout", "30"], 8072),
])
def test_run_sh_prints_the_url_of_its_port(args, port):
    out = subprocess.run(["bash", RUN, "--print-url"] + args,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "http://127.0.0.1:%d/longpolling\n" % port

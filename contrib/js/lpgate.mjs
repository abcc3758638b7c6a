// ES module entry: import LPGate from './lpgate.mjs'
import './lpgate.js';

const LPGate = globalThis.LPGate;
export default LPGate;
export const Client = LPGate.Client;
export const backoff = LPGate.backoff;

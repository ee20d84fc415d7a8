// `exum:policy/health` under Node: answered by the installed TestHost.
import { current } from '../testing.js';

export const targetHealthy = (uri) => !current().isDown(uri);

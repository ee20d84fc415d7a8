// `exum:policy/log` under Node: kept by the installed TestHost (`TestHost.logged()`).
import { current } from '../testing.js';

export function log(level, message) {
  current().logs.push([level, message]);
}

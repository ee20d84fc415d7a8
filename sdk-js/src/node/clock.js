// `exum:policy/clock` under Node: the installed TestHost's time (`at`).
import { current } from '../testing.js';

export function now() {
  const t = current().now;
  return { unixSeconds: BigInt(t.unixSeconds), utcOffsetMinutes: t.utcOffsetMinutes };
}

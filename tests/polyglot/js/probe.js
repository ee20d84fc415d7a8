// A policy in JavaScript, against sdk/wit/policy.wit with no SDK, for the
// router's tests: the Request-URI's user part picks what it does.
//   loop     never returns (the deadline stops it)
//   bomb     allocates until the memory limit stops it
//   entropy  rejects 480 with random bytes and the time it sees
//   std      the router's standard decision (the `standard` import), a
//            reject's reason prefixed, a forward given a header
//   <user>   a directory user: the standard decision; anyone else: 404
import { lookupUser } from 'exum:policy/directory@0.1.0';
import { log } from 'exum:policy/log@0.1.0';
import { route as standardRoute } from 'exum:policy/standard@0.1.0';

function text(req, span) {
  return req.head.substr(span.start, span.len);
}

function reject(code, reason) {
  return { tag: 'reject', val: { code, reason, headers: [] } };
}

export const handler = {
  init(config) {},
  route(req) {
    const uri = text(req, req.requestUri).split(';')[0];
    const user = uri.slice(uri.indexOf(':') + 1, uri.indexOf('@'));
    if (user === 'loop') {
      for (;;) {}
    }
    if (user === 'bomb') {
      const hoard = [];
      for (;;) {
        hoard.push(new Uint8Array(8 << 20).fill(hoard.length));
      }
    }
    if (user === 'entropy') {
      const bytes = new Uint8Array(8);
      crypto.getRandomValues(bytes);
      const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      return reject(480, `js ${hex} ${Math.floor(Date.now() / 1000)} ${Math.random()}`);
    }
    if (user === 'std') {
      const decision = standardRoute(req);
      if (decision.tag === 'reject') {
        decision.val.reason = `composed (js): ${decision.val.reason}`;
      } else if (decision.tag === 'forward') {
        decision.val.addHeaders.push({ name: 'X-Composed', value: 'js' });
      }
      return decision;
    }
    const found = lookupUser(uri);
    if (found === undefined) {
      return reject(404, 'Not Found (js)');
    }
    log('info', `routing ${found.sipAddress}`);
    return { tag: 'standard' };
  },
  onFailure(req, failure) {
    return { tag: 'standard' };
  },
};

// The router's standard Exchange UM routing algorithm, for a policy to compose with.

import * as imported from 'exum:policy/standard@0.1.0';

/** The standard algorithm's decision for `req` (never `standard`). */
export function route(req) {
  return imported.route(req.wire);
}

/** The standard algorithm's decision when every target failed. */
export function onFailure(req, failure) {
  return imported.onFailure(req.wire, failure);
}

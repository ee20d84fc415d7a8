/** @module Interface exum:policy/standard@0.1.0 **/
/**
 * The standard algorithm's decision for `req` (never `standard`).
 */
export function route(req: Request): Decision;
/**
 * Its decision when every target of a forward failed (never `standard`).
 */
export function onFailure(req: Request, failure: Failure): Decision;
export type Request = import('./exum-policy-types.js').Request;
export type Decision = import('./exum-policy-types.js').Decision;
export type Failure = import('./exum-policy-types.js').Failure;

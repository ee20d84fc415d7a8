/** @module Interface exum:policy/log@0.1.0 **/
/**
 * Write a message (at most 1 KiB is kept; the router also rate-limits).
 */
export function log(level: Level, message: string): void;
/**
 * How important a message is.
 * # Variants
 * 
 * ## `"trace"`
 * 
 * Fine detail.
 * ## `"debug"`
 * 
 * Diagnostic detail.
 * ## `"info"`
 * 
 * Normal events.
 * ## `"warn"`
 * 
 * Something unexpected that was handled.
 * ## `"error"`
 * 
 * Something failed.
 */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

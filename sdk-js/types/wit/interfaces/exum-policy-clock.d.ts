/** @module Interface exum:policy/clock@0.1.0 **/
/**
 * The current time.
 */
export function now(): Datetime;
/**
 * A point in time.
 */
export interface Datetime {
  /**
   * Seconds since 1970-01-01T00:00:00Z.
   */
  unixSeconds: bigint,
  /**
   * The tenant's configured offset from UTC, in minutes, for local time.
   */
  utcOffsetMinutes: number,
}

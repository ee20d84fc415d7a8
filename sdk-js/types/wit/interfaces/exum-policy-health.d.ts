/** @module Interface exum:policy/health@0.1.0 **/
/**
 * Whether a target is believed reachable: false once OPTIONS probes mark it
 * down, true again when a probe succeeds. Targets never probed are healthy.
 */
export function targetHealthy(uri: string): boolean;

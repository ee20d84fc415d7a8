// world exum:policy/policy@0.1.0
export type * as ExumPolicyClock010 from './interfaces/exum-policy-clock.js'; // import exum:policy/clock@0.1.0
export type * as ExumPolicyDirectory010 from './interfaces/exum-policy-directory.js'; // import exum:policy/directory@0.1.0
export type * as ExumPolicyHealth010 from './interfaces/exum-policy-health.js'; // import exum:policy/health@0.1.0
export type * as ExumPolicyLog010 from './interfaces/exum-policy-log.js'; // import exum:policy/log@0.1.0
export type * as ExumPolicyStandard010 from './interfaces/exum-policy-standard.js'; // import exum:policy/standard@0.1.0
export type * as ExumPolicyTypes010 from './interfaces/exum-policy-types.js'; // import exum:policy/types@0.1.0
export * as handler from './interfaces/exum-policy-handler.js'; // export exum:policy/handler@0.1.0

// `node --import @exum-router/policy-sdk/register`: the loader that answers the
// contract's imports from the test host and runs TypeScript under Node.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);

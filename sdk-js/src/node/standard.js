// `exum:policy/standard` under Node: the standard algorithm over the installed TestHost.
import { standardAnswers } from '../testing.js';

export const route = (req) => standardAnswers.route(req);
export const onFailure = (req, failure) => standardAnswers.onFailure(req, failure);

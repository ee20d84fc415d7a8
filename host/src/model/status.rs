//! SIP status codes and their standard reason phrases: `exum-address`'s table,
//! shared with the policy SDK.

pub use exum_address::reason_phrase;

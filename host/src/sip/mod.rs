//! The SIP plane's proxy side, on top of the SIP model: transports (UDP, TCP,
//! TLS), target resolution (RFC 3263), transactions, the proxy core, the error
//! type of the request path, messages the router originates, overload control,
//! health probes and the secret that marks what the router minted. No Wasm in here: the proxy asks the policy plane.

pub mod error;
pub mod originate;
pub mod overload;
pub mod probe;
pub mod proxy;
pub mod resolve;
pub mod secret;
pub mod tls;
pub mod transaction;
pub mod transport;

//! Bindings generated from the contract in `sdk/wit/`, the same files the SDK reads.
//!
//! Imports are trappable: a replayed decision whose policy asks for something
//! its record does not hold ends in a trap naming what was asked.

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "exum:policy/policy@0.1.0",
    imports: { default: trappable },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

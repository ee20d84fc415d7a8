//! Bindings generated from the contract in `sdk/wit/`, the same files the SDK reads.

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "exum:policy/policy@0.1.0",
    additional_derives: [serde::Serialize, PartialEq],
});

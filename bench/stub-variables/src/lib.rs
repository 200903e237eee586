//! `fermyon:spin/variables@2.0.0` where no variable is defined.
//!
//! Composed into the service component for the `/health` comparison with `wasmtime serve`,
//! which has no Spin variables. `/health` reads no variable; `/chat` through the composed
//! component answers 503 `not_configured`, as under a host with no variables set.

wit_bindgen::generate!({
    inline: "package bench:stub;

world stub {
    export fermyon:spin/variables@2.0.0;
}",
    path: "../../wit/deps/fermyon-spin.wit",
    world: "bench:stub/stub",
});

use exports::fermyon::spin::variables::{Error, Guest};

struct NoVariables;

impl Guest for NoVariables {
    fn get(name: String) -> Result<String, Error> {
        Err(Error::Undefined(name))
    }
}

export!(NoVariables);

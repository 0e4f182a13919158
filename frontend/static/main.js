// Loads the leptos app compiled to WebAssembly (wasm-bindgen --target web).
import init from "./forexgpt_frontend.js";

init();

//! The ForexGPT Workbench UI: leptos, rendered in the webview of the Tauri shell.

mod app;
mod charts;
mod format;
mod ipc;
mod tabs;
mod widgets;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}

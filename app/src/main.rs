//! `app`: the API server binary. All the work is in the library.

fn main() -> std::process::ExitCode {
    app::run()
}

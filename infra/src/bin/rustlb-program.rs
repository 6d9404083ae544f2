//! The Pulumi program on its own, the binary `Pulumi.yaml` runs: built only with the `cloud` feature, so rebuilding the `infra` command for the local stack never replaces it.

fn main() -> std::process::ExitCode {
    match infra::program::run_under_engine() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

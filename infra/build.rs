//! Generates the typed DigitalOcean bindings from the provider schema cut in `schema/`.
//!
//! Only with the `cloud` feature: the local stack needs no bindings.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema/digitalocean.json");
    #[cfg(feature = "cloud")]
    pulumi_gestalt_build::generate_from_schema(std::path::Path::new("schema/digitalocean.json"))?;
    Ok(())
}

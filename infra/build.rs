//! Generates the typed DigitalOcean bindings from the schema slice in `schema/`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    pulumi_gestalt_build::generate_from_schema(std::path::Path::new("schema/digitalocean.yaml"))?;
    Ok(())
}

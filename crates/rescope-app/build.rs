// Rebuild when the web UI is rebuilt: release builds embed `web/dist`, and a build made
// before the UI existed must pick it up once `npm run build` has run.
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
    println!("cargo:rerun-if-changed=build.rs");
}

// `embed_migrations!` reads the migrations at compile time; make a new or changed
// migration rebuild this crate.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}

//! `sqlx::migrate!` embeds the migrations folder at compile time, but cargo does not know it
//! reads it: without this, a new migration alone would not rebuild the sinker.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}

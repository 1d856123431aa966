use which::which;

/// Rebuild the kernel program when bpf-linker changes (a new LLVM may emit
/// different code).
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // bpf-linker asks LLVM to expand every memcpy/memset/memmove in order,
    // which turns each one into a call to a byte loop the verifier walks
    // byte by byte. Without it small copies and fills become word stores.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}

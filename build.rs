//! Links ferrotune against the libtorch that ships inside the pip `torch` package.
//!
//! torch-sys (with `LIBTORCH_USE_PYTORCH=1` from `.cargo/config.toml`) compiles its C++ shim
//! against that torch. Here we add what torch-sys leaves out:
//! - the libtorch folder of the torch that the building Python sees *now*: pip builds in a new
//!   temporary environment each time, while torch-sys caches the folder of the first build and
//!   never looks again, so a second `pip install .` would link against a deleted folder;
//! - `-ltorch` without `--as-needed`, so that libtorch_cuda is loaded and CUDA is usable from
//!   Rust whenever the installed torch has it (the linker would otherwise drop the library,
//!   as no symbol of it is referenced directly);
//! - an rpath `$ORIGIN/../torch/lib` for the extension module, which is installed as
//!   `site-packages/ferrotune/_core*.so` beside `site-packages/torch/`; the wheel bundles none
//!   of libtorch;
//! - absolute rpaths (libtorch, libpython) when not building the extension module (maturin sets
//!   `PYO3_BUILD_EXTENSION_MODULE`), so that `cargo test` binaries start; the wheel has none.
//!
//! It also compiles `csrc/ops.cpp` (libtorch operations that tch does not bind) against the
//! same torch, and records the torch version, for the import-time check.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PRINT_TORCH: &str = "import os, torch; print(torch.__version__); \
    print(os.path.join(os.path.dirname(torch.__file__), 'lib')); \
    print(int(torch._C._GLIBCXX_USE_CXX11_ABI))";

/// The torch that the building Python imports.
struct Torch {
    version: String,
    /// `torch/lib`, with libtorch*.so; `torch/include` is beside it.
    lib: PathBuf,
    cxx11_abi: String,
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["PYO3_PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "PYO3_BUILD_EXTENSION_MODULE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let torch = installed_torch();
    // Rerun when that torch goes away (pip deletes its build environment after each build).
    println!("cargo:rerun-if-changed={}", torch.lib.join("libtorch_cpu.so").display());
    println!("cargo:rustc-env=FERROTUNE_TORCH_VERSION={}", torch.version);

    // The libtorch operations tch does not bind (csrc/ops.cpp).
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    let mut ops = cc::Build::new();
    ops.cpp(true)
        .pic(true)
        .std("c++20")
        .include(torch.lib.join("..").join("include"))
        .define("_GLIBCXX_USE_CXX11_ABI", torch.cxx11_abi.as_str())
        .flag_if_supported("-Wno-unused-parameter")
        // The layout kernels compute the rotary as the tensor formula does, product by product.
        .flag("-ffp-contract=off");
    // at::parallel_for is inline: without OpenMP at compile time it runs the whole range on
    // the calling thread. With it, it runs on torch's own OpenMP threads, through the libgomp
    // that torch ships (linked by its path, so that no second OpenMP runtime is loaded).
    if let Some(gomp) = torch_openmp(&torch.lib) {
        ops.flag("-fopenmp");
        println!("cargo:rustc-link-arg={}", gomp.display());
    }
    ops.file("csrc/ops.cpp").compile("ferrotune_ops");
    println!("cargo:rustc-link-search=native={}", torch.lib.display());

    println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--pop-state");

    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    if env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_none() {
        let mut rpaths = vec![torch.lib];
        if let Some(lib_dir) = pyo3_build_config::get().lib_dir() {
            rpaths.push(PathBuf::from(lib_dir));
        }
        for dir in &rpaths {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}

/// The OpenMP runtime in torch's lib folder (`libgomp.so.1`, or a name with a hash where the
/// wheel renamed it), if torch ships one.
fn torch_openmp(lib: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libgomp") && name.contains(".so")
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn installed_torch() -> Torch {
    // maturin names the interpreter in PYO3_PYTHON; otherwise pick it as torch-sys does.
    let python = env::var("PYO3_PYTHON").unwrap_or_else(|_| {
        if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" }.to_string()
    });
    let output = Command::new(&python)
        .args(["-c", PRINT_TORCH])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} to locate torch: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    match (output.status.success(), lines.next(), lines.next(), lines.next()) {
        (true, Some(version), Some(lib), Some(abi)) if Path::new(lib).is_dir() => Torch {
            version: version.trim().to_string(),
            lib: PathBuf::from(lib.trim()),
            cxx11_abi: abi.trim().to_string(),
        },
        _ => panic!(
            "ferrotune builds against the installed torch, but `{python}` could not import it:\n{}\n\
             Install a supported torch first (README.md, Install), then build with \
             pip install --no-build-isolation .",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

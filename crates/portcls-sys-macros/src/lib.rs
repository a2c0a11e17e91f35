//! `#[windows_abi]`: gives a function the calling convention Windows x64
//! kernel code uses, on every x86_64 target, so that one definition serves the
//! kernel image and the user-mode emulator alike.
//!
//! Re-exported by `portcls-sys` (use it as `portcls_sys::windows_abi`), which
//! also holds its counterpart for function-pointer *types*,
//! `portcls_sys::windows_fn!`. Together they are the single place where the
//! workspace decides what "the Windows ABI" means:
//!
//! * on `target_arch = "x86_64"` (Windows or not): `extern "win64"`. On
//!   `x86_64-pc-windows-msvc` that is exactly `extern "system"`; on an x86_64
//!   Linux host it makes the emulator call the host-built miniport with the
//!   same convention the shipped `.sys` uses, so the emulator's port objects
//!   can serve both, and every host test exercises the real convention.
//! * elsewhere (ARM64 Windows, other hosts): `extern "system"`.
//!
//! A function-pointer type written with `windows_fn!` and a function defined
//! with `#[windows_abi]` always agree, so a vtable slot filled with a function
//! that lacks the attribute is a type error on x86_64, never a silent
//! convention mismatch.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, spanned::Spanned, Abi, ItemFn, LitStr};

/// Makes an `extern "system" fn` use `extern "win64"` on x86_64 targets.
///
/// The function must be written `extern "system"` (so that it reads as a
/// Windows callback, and is one on Windows); the attribute emits it twice
/// behind complementary `cfg(target_arch)` gates, once with each ABI. Any
/// other ABI, or none, is a compile error.
#[proc_macro_attribute]
pub fn windows_abi(attribute: TokenStream, item: TokenStream) -> TokenStream {
    if !attribute.is_empty() {
        return syn::Error::new(
            proc_macro2::TokenStream::from(attribute).span(),
            "#[windows_abi] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let written_system = function
        .sig
        .abi
        .as_ref()
        .and_then(|abi| abi.name.as_ref())
        .is_some_and(|name| name.value() == "system");
    if !written_system {
        return syn::Error::new(
            function.sig.span(),
            "#[windows_abi] applies to functions written `extern \"system\" fn`",
        )
        .to_compile_error()
        .into();
    }
    let mut on_x86_64 = function.clone();
    on_x86_64.sig.abi = Some(Abi {
        extern_token: syn::token::Extern(function.sig.span()),
        name: Some(LitStr::new("win64", function.sig.span())),
    });
    quote! {
        #[cfg(target_arch = "x86_64")]
        #on_x86_64
        #[cfg(not(target_arch = "x86_64"))]
        #function
    }
    .into()
}

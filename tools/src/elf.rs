//! Reading a firmware ELF: symbol addresses, functions, and flash/RAM sizes.
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};

use crate::{Error, Result};

/// ELF section flags (`sh_flags`) this module reads.
const SHF_WRITE: u64 = 0x1;
const SHF_ALLOC: u64 = 0x2;

/// A function symbol: start address (Thumb bit cleared), size and demangled name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub addr: u64,
    pub size: u64,
    pub name: String,
}

/// Flash and RAM taken by an image, as `llvm-size` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sizes {
    /// Every allocated section with contents (vector table, code, read-only data, and the
    /// initial values of `.data`): what is written to flash.
    pub flash: u64,
    /// Writable allocated sections (`.data`, `.bss`, `.uninit`): static RAM, before the stack.
    pub ram_static: u64,
}

/// A parsed firmware ELF.
pub struct Elf {
    data: Vec<u8>,
}

impl Elf {
    /// Reads and checks the file.
    pub fn read(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| Error::ctx(path.display(), e))?;
        object::File::parse(&*data).map_err(|e| Error::ctx(path.display(), e))?;
        Ok(Self { data })
    }

    fn file(&self) -> Result<object::File<'_>> {
        object::File::parse(&*self.data).map_err(|e| Error::ctx("ELF", e))
    }

    /// The address of symbol `name` (as stored: Thumb functions have bit 0 set).
    pub fn symbol(&self, name: &str) -> Result<u64> {
        self.file()?
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
            .ok_or_else(|| Error(format!("symbol `{name}` not found in the firmware ELF")))
    }

    /// All function symbols, sorted by address.
    pub fn functions(&self) -> Result<Vec<Function>> {
        let file = self.file()?;
        let mut fns: Vec<Function> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some(Function {
                    addr: s.address() & !1,
                    size: s.size(),
                    name: format!("{:#}", rustc_demangle::demangle(name)),
                })
            })
            .collect();
        fns.sort_by_key(|f| f.addr);
        fns.dedup_by_key(|f| f.addr);
        Ok(fns)
    }

    /// Flash and static RAM of the image.
    pub fn sizes(&self) -> Result<Sizes> {
        let mut sizes = Sizes::default();
        for s in self.file()?.sections() {
            let SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            if sh_flags & SHF_ALLOC == 0 {
                continue;
            }
            if s.kind() != SectionKind::UninitializedData {
                sizes.flash += s.size();
            }
            if sh_flags & SHF_WRITE != 0 {
                sizes.ram_static += s.size();
            }
        }
        Ok(sizes)
    }
}

/// The function containing `addr`, by binary search in `fns` (sorted by address).
pub fn function_at(fns: &[Function], addr: u64) -> Option<&Function> {
    let i = fns.partition_point(|f| f.addr <= addr).checked_sub(1)?;
    fns.get(i).filter(|f| addr < f.addr + f.size)
}

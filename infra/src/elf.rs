//! Whether an app build can start on a droplet: an x86-64 Linux ELF needing no newer glibc than the image has.
//!
//! Reads the ELF header and the `.gnu.version_r` section (the versions of shared-library
//! symbols the binary needs), the way `objdump -p` shows them. Layout: the System V ABI and
//! its AMD64 supplement; `SHT_GNU_verneed` from the LSB (Linux Standard Base) spec.

/// `e_machine` of x86-64.
const EM_X86_64: u16 = 62;
/// `sh_type` of the version-needs section.
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// The glibc each droplet image ships, as (major, minor). Source: the images' libc6 packages
/// (Ubuntu 24.04 noble 2.39, Ubuntu 22.04 jammy 2.35, Debian 12 bookworm 2.36).
pub const IMAGE_GLIBC: &[(&str, (u32, u32))] = &[
    ("ubuntu-24-04-x64", (2, 39)),
    ("ubuntu-22-04-x64", (2, 35)),
    ("debian-12-x64", (2, 36)),
];

/// How to build an app binary that runs on any of the images.
pub const FIX: &str = "build for musl (`rustup target add x86_64-unknown-linux-musl && cargo build --release -p app --target x86_64-unknown-linux-musl`, then `pulumi config set rustlb:appBinary target/x86_64-unknown-linux-musl/release/app`) or build on an x86-64 Linux host whose glibc is no newer than the droplet image's";

/// Checks `bytes` (a whole binary) against the droplet image; the error names what is wrong.
pub fn check_runs_on(bytes: &[u8], image: &str) -> Result<(), String> {
    let kind = describe_foreign(bytes);
    if let Some(kind) = kind {
        return Err(format!("it is {kind}, not an x86-64 Linux program"));
    }
    let elf = Elf { bytes };
    if elf.u8(4) != Some(2) || elf.u8(5) != Some(1) {
        return Err("it is a 32-bit or big-endian ELF, not an x86-64 Linux program".into());
    }
    let machine = elf.u16(18).unwrap_or(0);
    if machine != EM_X86_64 {
        return Err(format!(
            "it is an ELF for {}, not for x86-64",
            machine_name(machine)
        ));
    }
    let Some(&(_, have)) = IMAGE_GLIBC.iter().find(|(slug, _)| *slug == image) else {
        return Ok(());
    };
    let needed = elf.glibc_needed()?;
    match needed {
        Some(need) if need > have => Err(format!(
            "it needs glibc {}.{}, and the droplet image {image} has {}.{}",
            need.0, need.1, have.0, have.1
        )),
        _ => Ok(()),
    }
}

/// Recognisable non-ELF executables.
fn describe_foreign(bytes: &[u8]) -> Option<&'static str> {
    match bytes.get(..4) {
        Some([0x7f, b'E', b'L', b'F']) => None,
        Some([0xcf, 0xfa, 0xed, 0xfe] | [0xce, 0xfa, 0xed, 0xfe] | [0xca, 0xfe, 0xba, 0xbe]) => {
            Some("a macOS (Mach-O) binary")
        }
        Some([b'M', b'Z', ..]) => Some("a Windows (PE) binary"),
        Some([b'#', b'!', ..]) => Some("a script"),
        _ => Some("not an executable this program recognises"),
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        183 => "ARM64 (aarch64)".into(),
        40 => "32-bit ARM".into(),
        3 => "32-bit x86".into(),
        243 => "RISC-V".into(),
        21 => "64-bit PowerPC".into(),
        other => format!("machine type {other}"),
    }
}

/// Little-endian ELF64 reads that fail softly on a truncated file.
struct Elf<'a> {
    bytes: &'a [u8],
}

impl Elf<'_> {
    fn u8(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.bytes.get(at..at + 2)?.try_into().ok()?,
        ))
    }

    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.bytes.get(at..at + 4)?.try_into().ok()?,
        ))
    }

    fn u64(&self, at: usize) -> Option<usize> {
        let v = u64::from_le_bytes(self.bytes.get(at..at + 8)?.try_into().ok()?);
        usize::try_from(v).ok()
    }

    fn c_str(&self, at: usize) -> Option<&str> {
        let rest = self.bytes.get(at..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// (type, offset, size, link, info) of section `i`.
    fn section(&self, i: usize) -> Option<(u32, usize, usize, u32, u32)> {
        let (shoff, shentsize) = (self.u64(0x28)?, usize::from(self.u16(0x3a)?));
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            self.u32(at + 4)?,
            self.u64(at + 0x18)?,
            self.u64(at + 0x20)?,
            self.u32(at + 0x28)?,
            self.u32(at + 0x2c)?,
        ))
    }

    /// The newest `GLIBC_x.y` the binary needs; `None` for a static binary.
    fn glibc_needed(&self) -> Result<Option<(u32, u32)>, String> {
        let broken = || "its ELF section table is damaged (a truncated copy?)".to_string();
        let count = usize::from(self.u16(0x3c).ok_or_else(broken)?);
        let mut newest: Option<(u32, u32)> = None;
        for i in 0..count {
            let (kind, offset, _, link, entries) = self.section(i).ok_or_else(broken)?;
            if kind != SHT_GNU_VERNEED {
                continue;
            }
            let (_, strtab, _, _, _) = self.section(link as usize).ok_or_else(broken)?;
            let mut need = offset;
            for _ in 0..entries {
                let (cnt, aux, next) = (
                    self.u16(need + 2).ok_or_else(broken)?,
                    self.u32(need + 8).ok_or_else(broken)? as usize,
                    self.u32(need + 12).ok_or_else(broken)? as usize,
                );
                let mut a = need + aux;
                for _ in 0..cnt {
                    let name = self.u32(a + 8).ok_or_else(broken)? as usize;
                    if let Some(v) = self
                        .c_str(strtab + name)
                        .and_then(|n| n.strip_prefix("GLIBC_"))
                        .and_then(parse_version)
                    {
                        newest = newest.max(Some(v));
                    }
                    a += self.u32(a + 12).ok_or_else(broken)? as usize;
                }
                need += next;
            }
        }
        Ok(newest)
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

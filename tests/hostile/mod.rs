//! The hostile-image corpus: layers an attacker could hand stella, each
//! built here byte for byte (the tar crate's safe builders refuse hostile
//! names), deterministically. The small ones are also kept in the repo as
//! `tests/fixtures/hostile/NAME.tar` (and as seeds of the `unpack` fuzz
//! target); `tests/hostile_images.rs` checks that the files and this
//! generator agree. The bombs are made here only: one is 4 MiB.
#![allow(dead_code)]

/// One tar entry.
pub enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar written header by header (v7 headers: names up to 100 bytes).
pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (path, kind, link, body): (&str, tar::EntryType, &str, &[u8]) = match e {
            E::File(p, c) => (p, tar::EntryType::Regular, "", c.as_bytes()),
            E::Dir(p) => (p, tar::EntryType::Directory, "", b""),
            E::Symlink(p, t) => (p, tar::EntryType::Symlink, t, b""),
            E::Hardlink(p, t) => (p, tar::EntryType::Link, t, b""),
        };
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_size(body.len() as u64);
        h.set_mode(if matches!(e, E::Dir(_)) { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

/// `d/d/…/d` (`n` deep).
pub fn deep(n: usize) -> String {
    vec!["d"; n].join("/")
}

/// The escape seen in the wild: a folder 12 deep, `s` there pointing at
/// the release root (`../..` ×12), `root` pointing through `s` twelve
/// levels further up (on disk: `/`), and `passwd-link` reading the host's
/// `/etc/passwd` through it. Each link, read as text relative to its
/// folder, stays inside.
pub fn escape_chain() -> Vec<u8> {
    let d = deep(12);
    let up = [".."; 12].join("/");
    let s = format!("{d}/s");
    let root = format!("{d}/root");
    let via_s = format!("s/{up}");
    let passwd = format!("{d}/root/etc/passwd");
    let mut entries: Vec<E<'_>> = Vec::new();
    let dirs: Vec<String> = (1..=12).map(deep).collect();
    for dir in &dirs {
        entries.push(E::Dir(dir));
    }
    entries.push(E::File("index.html", "hostile"));
    entries.push(E::Symlink(&s, &up));
    entries.push(E::Symlink(&root, &via_s));
    entries.push(E::Symlink("passwd-link", &passwd));
    tar_of(&entries)
}

/// Each small hostile layer: (name, layer, what the refusal must say).
pub fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "escape-chain",
            escape_chain(),
            "symlink to `s/../../../../../../../../../../../..` leaves the release directory",
        ),
        (
            "whiteout-dotdot",
            tar_of(&[E::File("index.html", "hostile"), E::File(".wh...", "")]),
            "entry `.wh...` is refused: a whiteout of `..`",
        ),
        (
            "whiteout-dot",
            tar_of(&[E::File("index.html", "hostile"), E::File(".wh..", "")]),
            "entry `.wh..` is refused: a whiteout of `.`",
        ),
        (
            "whiteout-empty",
            tar_of(&[E::File("index.html", "hostile"), E::File("sub/.wh.", "")]),
            "entry `sub/.wh.` is refused: a whiteout that names nothing",
        ),
        (
            "absolute",
            tar_of(&[E::File("/tmp/stella-hostile-absolute", "x")]),
            "`/tmp/stella-hostile-absolute` is refused: absolute paths and `..` are not allowed",
        ),
        (
            "dotdot",
            tar_of(&[
                E::File("index.html", "hostile"),
                E::File("a/../../escaped", "x"),
            ]),
            "`a/../../escaped` is refused: absolute paths and `..` are not allowed",
        ),
        (
            "symlink-absolute",
            tar_of(&[E::Symlink("etc", "/etc")]),
            "`etc` is refused: symlink to `/etc` leaves the release directory",
        ),
        (
            "symlink-then-write-through",
            tar_of(&[E::Symlink("up", "."), E::File("up/up/index.html", "x")]),
            "`up/up/index.html` is refused: its parent `up` is a symlink",
        ),
        (
            "hardlink-out",
            tar_of(&[E::Hardlink("h", "../outside")]),
            "hard link to `../outside` leaves the release directory",
        ),
        (
            "hardlink-through-link",
            tar_of(&[E::Symlink("s", "."), E::Hardlink("h", "s/index.html")]),
            "`h` is refused: its parent `s` is a symlink",
        ),
        (
            // A link inside when made, turned outward by a later entry:
            // `a/b` becomes a link to `.`, so `a/b/../..` is `a/../..`.
            "link-turned-outward",
            tar_of(&[
                E::Dir("a"),
                E::Dir("a/b"),
                E::Symlink("y", "a/b/../.."),
                E::Symlink("a/b", "."),
            ]),
            "`y` is refused: symlink to `a/b/../..` leaves the release directory (through links unpacked after it)",
        ),
        (
            "too-deep",
            // 129 folders: past the default `max_depth` of 128.
            tar_of_long(&format!("{}/f", deep(128))),
            "levels deep, more than 128; refused (`max_depth`",
        ),
    ]
}

/// A tar of one file with a long name (a GNU long-name entry).
pub fn tar_of_long(path: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

/// `n` empty files: past a small `max_entries`.
pub fn many_entries(n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let entries: Vec<E<'_>> = names.iter().map(|n| E::File(n, "")).collect();
    tar_of(&entries)
}

/// What a bomb's zeros are declared as.
#[derive(Clone, Copy)]
pub enum Bomb {
    /// One regular file of that many zeros: the tar header says so.
    File,
    /// A pax extended header of that many zeros: nothing says how big
    /// until it is read.
    Pax,
}

/// A gzip layer whose tar holds one entry of `zeros` zero bytes, made in
/// milliseconds: compressed once, a MiB of zeros gives the same deflate
/// block every time, which is repeated. (Its gzip trailer holds no real
/// CRC: an unpacker must stop long before it.)
pub fn gzip_bomb(zeros: u64, kind: Bomb) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(zeros);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(match kind {
        Bomb::File => tar::EntryType::Regular,
        Bomb::Pax => tar::EntryType::XHeader,
    });
    h.set_cksum();
    let mut c = Compress::new(Compression::best(), false);
    let mut deflate = |input: &[u8], flush: FlushCompress| -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 1024);
        let start_in = c.total_in();
        loop {
            let consumed = (c.total_in() - start_in) as usize;
            out.reserve(64 << 10);
            let status = c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
            let done = (c.total_in() - start_in) as usize == input.len();
            if done && (out.len() < out.capacity() || status == flate2::Status::StreamEnd) {
                break;
            }
        }
        out
    };
    let mut body = deflate(h.as_bytes(), FlushCompress::None);
    const CHUNK: u64 = 1 << 20;
    let chunk = vec![0u8; CHUNK as usize];
    let mut left = zeros;
    let mut steady: Option<Vec<u8>> = None;
    let mut last: Option<Vec<u8>> = None;
    while left > CHUNK {
        let block = match &steady {
            Some(s) => s.clone(),
            None => {
                let b = deflate(&chunk, FlushCompress::Sync);
                if last.as_ref() == Some(&b) {
                    steady = Some(b.clone());
                }
                last = Some(b.clone());
                b
            }
        };
        body.extend_from_slice(&block);
        left -= CHUNK;
    }
    // The rest, the padding to 512 and the two end blocks.
    let pad = (512 - zeros % 512) % 512;
    body.extend(deflate(
        &vec![0u8; (left + pad + 1024) as usize],
        FlushCompress::Finish,
    ));
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend(body);
    gz.extend(0u32.to_le_bytes());
    gz.extend(((zeros + 512 + pad + 1024) as u32).to_le_bytes());
    gz
}

/// `n` entries, each a pax header of `each` zero bytes (under the cap on
/// one entry's headers) and an empty file: their stream adds up past the
/// ratio though nothing is written.
pub fn pax_series(n: usize, each: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let zeros = vec![0u8; each];
    for i in 0..n {
        let mut h = tar::Header::new_ustar();
        h.set_path(format!("pax{i}")).unwrap();
        h.set_size(each as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        b.append(&h, &zeros[..]).unwrap();
        let mut f = tar::Header::new_ustar();
        f.set_path(format!("f{i}")).unwrap();
        f.set_size(0);
        f.set_mode(0o644);
        f.set_mtime(0);
        f.set_entry_type(tar::EntryType::Regular);
        f.set_cksum();
        b.append(&f, &b""[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

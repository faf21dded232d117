//! `luksfuse encrypt` and `luksfuse decrypt`: in-place conversion of a payload, like
//! `cryptsetup reencrypt --encrypt/--decrypt --header`, with a progress bar on a terminal.

use crate::cli::{DecryptArgs, EncryptArgs, LuksType, ReencryptOpts, ResilienceMode};
use crate::tty::{KeySource, Progress};
use luksfuse::error::{Error, Kind, Result};
use luksfuse::headers::NewHeader;
use luksfuse::image::{self, Access, Format, Image};
use luksfuse::luks::format::FormatOptions;
use luksfuse::luks::luks2::reencrypt::{Mode, Params, Reencryption, Resilience};
use luksfuse::luks::{Header, HeaderFile};
use luksfuse::reencrypt::{self as mover, Options, Outcome, Summary};
use luksfuse::secret::Passphrase;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// What the header file holds, as far as a run is concerned (read without the key).
enum Found {
    /// Nothing: absent or empty.
    Nothing,
    /// A LUKS2 header in the middle of an encryption or a decryption.
    InProgress(Mode),
    /// A LUKS header not in reencryption (its version).
    Header(u16),
    /// Something else.
    Other,
}

fn look(path: &Path) -> Result<Found> {
    match std::fs::metadata(path) {
        Err(_) => return Ok(Found::Nothing),
        Ok(m) if m.is_dir() => return Err(Error::usage("is a directory").in_file(path)),
        Ok(m) if m.len() == 0 => return Ok(Found::Nothing),
        Ok(_) => {}
    }
    let file = HeaderFile::open(path)?;
    Ok(match Header::parse(&file) {
        Ok(Header::Luks2(h)) => match h.reencrypt_keyslot().map(|(_, k)| k.mode.as_str()) {
            Some("encrypt") => Found::InProgress(Mode::Encrypt),
            Some("decrypt") => Found::InProgress(Mode::Decrypt),
            Some(_) => Found::Other,
            None => Found::Header(2),
        },
        Ok(Header::Luks1(_)) => Found::Header(1),
        Err(_) => Found::Other,
    })
}

fn resilience(o: &ReencryptOpts) -> Resilience {
    match o.resilience {
        ResilienceMode::Checksum => Resilience::Checksum {
            hash: o.resilience_hash.0,
            block: luksfuse::luks::luks2::reencrypt::DEFAULT_CHECKSUM_BLOCK,
        },
        ResilienceMode::Journal => Resilience::Journal,
        ResilienceMode::None => Resilience::None,
    }
}

fn open_payload(o: &ReencryptOpts) -> Result<Arc<dyn Image>> {
    let format = o.payload_format.map(|f| match f {
        crate::cli::PayloadFormat::Raw => Format::Raw,
        crate::cli::PayloadFormat::Qcow2 => Format::Qcow2,
    });
    let (img, _) = image::open(&o.payload, Access::ReadWrite, format, false, false)?;
    Ok(img)
}

fn in_progress_elsewhere(o: &ReencryptOpts, mode: Mode) -> Error {
    let cmd = match mode {
        Mode::Encrypt => "encrypt",
        Mode::Decrypt => "decrypt",
    };
    Error::usage(format!(
        "an in-place {cmd}ion is in progress in this header"
    ))
    .in_file(&o.header)
    .with_hint(format!(
        "finish it with luksfuse {cmd} --resume --header {} {}",
        o.header.display(),
        o.payload.display()
    ))
}

pub fn encrypt(a: &EncryptArgs) -> Result<()> {
    let o = &a.run;
    if a.kind == LuksType::Luks1 && a.new.sector_size != 512 {
        return Err(Error::usage(
            "LUKS1 has 512-byte sectors only (--sector-size 512)",
        ));
    }
    let stop = catch_signals(o)?;
    let image = open_payload(o)?;
    let size = image.size();
    let src = a.key.source();
    let (job, pass) = match look(&o.header)? {
        Found::InProgress(Mode::Encrypt) => {
            let pass = src.read(&o.header.display().to_string())?;
            (Reencryption::resume(&o.header, &pass, size)?, pass)
        }
        Found::InProgress(Mode::Decrypt) => return Err(in_progress_elsewhere(o, Mode::Decrypt)),
        Found::Header(_) | Found::Other => {
            return Err(Error::usage(
                "exists and is not an encryption in progress; encrypt makes a new header",
            )
            .in_file(&o.header)
            .with_hint("name a new header file, or remove this one if it is not needed"))
        }
        Found::Nothing if o.resume => {
            return Err(
                Error::usage("no encryption is in progress: the header does not exist")
                    .in_file(&o.header),
            )
        }
        Found::Nothing => {
            let opts = FormatOptions {
                version: 2,
                cipher: a.new.cipher.clone(),
                key_bits: a.new.key_size,
                kdf: a.new.kdf.options(),
                sector_size: a.new.sector_size,
                offset_sectors: 0,
                uuid: a.new.uuid.clone(),
                label: a.new.label.clone(),
            };
            let pass = src.read_prompt(
                &format!("Enter passphrase for {}: ", o.header.display()),
                true,
            )?;
            let params = Params::new(resilience(o));
            let mut p = Progress::new();
            p.step(luksfuse::headers::Step::Start(
                luksfuse::headers::Task::WriteHeader,
            ));
            let job = Reencryption::init_encrypt(&o.header, &opts, &pass, &params, size, false)?;
            p.step(luksfuse::headers::Step::Done(
                luksfuse::headers::Task::WriteHeader,
            ));
            (job, pass)
        }
    };
    let finished = drive(job, image.as_ref(), o, &stop, "Encrypting")?;
    if finished && a.kind == LuksType::Luks1 {
        to_luks1(a, &pass)?;
    }
    Ok(())
}

/// Replaces the finished LUKS2 header by a LUKS1 one with the same volume key, UUID and
/// passphrase (the run records its progress the LUKS2 way; LUKS1 has no place for it).
fn to_luks1(a: &EncryptArgs, pass: &Passphrase) -> Result<()> {
    rewrite_header(&a.run.header, pass, |h| {
        Ok(FormatOptions {
            version: 1,
            cipher: a.new.cipher.clone(),
            key_bits: a.new.key_size,
            kdf: a.new.kdf.options(),
            sector_size: 512,
            offset_sectors: 0,
            uuid: Some(h.uuid().to_owned()),
            label: None,
        })
    })
}

/// Rewrites the header `path` as the one `make` describes (given the old header), with the
/// same volume key, opened by the same passphrase; crash-safe as `format` is.
fn rewrite_header(
    path: &Path,
    pass: &Passphrase,
    make: impl FnOnce(&Header) -> Result<FormatOptions>,
) -> Result<()> {
    let file = HeaderFile::open(path)?;
    let h = Header::parse(&file).map_err(|e| e.in_file(path))?;
    let u = h
        .unlock(&file, pass.as_bytes(), None)
        .map_err(|e| e.in_file(path))?;
    let opts = make(&h)?;
    drop(file);
    let new = NewHeader::prepare(path, &opts)?;
    let mut p = Progress::new();
    new.write(Some(u.key), pass, &mut |s| p.step(s))
}

pub fn decrypt(a: &DecryptArgs) -> Result<()> {
    let o = &a.run;
    let stop = catch_signals(o)?;
    let image = open_payload(o)?;
    let size = image.size();
    let src: KeySource = a.key.source();
    let job = match look(&o.header)? {
        Found::InProgress(Mode::Decrypt) => {
            let pass = src.read(&o.header.display().to_string())?;
            Reencryption::resume(&o.header, &pass, size)?
        }
        Found::InProgress(Mode::Encrypt) => return Err(in_progress_elsewhere(o, Mode::Encrypt)),
        _ if o.resume => {
            return Err(
                Error::usage("no decryption is in progress in this header").in_file(&o.header)
            )
        }
        Found::Nothing | Found::Other => {
            return Err(Error::new(Kind::Device, "is not a LUKS header").in_file(&o.header))
        }
        Found::Header(version) => {
            let pass = src.read(&o.header.display().to_string())?;
            if version == 1 {
                luks1_to_luks2(&o.header, &pass)?;
            }
            let params = Params::new(resilience(o));
            Reencryption::init_decrypt(&o.header, &pass, &params, size)?
        }
    };
    drive(job, image.as_ref(), o, &stop, "Decrypting")?;
    Ok(())
}

/// A LUKS1 header becomes a LUKS2 one with the same key, UUID and passphrase, so that the
/// decryption can record its progress (the header is useless afterwards anyway).
fn luks1_to_luks2(path: &Path, pass: &Passphrase) -> Result<()> {
    rewrite_header(path, pass, |h| {
        let seg = h.segment();
        if seg.offset.get() != 0 {
            return Err(Error::unsupported(format!(
                "the data starts at byte {} of the payload; in-place decryption needs offset 0",
                seg.offset.get()
            ))
            .in_file(path));
        }
        Ok(FormatOptions {
            version: 2,
            cipher: seg.cipher.as_str().to_owned(),
            key_bits: Some(u32::try_from(seg.key_size * 8).expect("small key")),
            // PBKDF2 as the LUKS1 keyslot had (no Argon2 memory cost for a header that only
            // lives while the decryption runs).
            kdf: luksfuse::luks::format::KdfOptions {
                pbkdf: Some("pbkdf2".into()),
                ..Default::default()
            },
            sector_size: 512,
            offset_sectors: 0,
            uuid: Some(h.uuid().to_owned()),
            label: None,
        })
    })
}

/// From the start of a command on, SIGINT, SIGTERM and SIGHUP ask the run to stop at the
/// end of its hotzone (before the run, where nothing has changed yet, too). A second signal
/// ends the process at once, which the checksum and journal modes survive like any crash;
/// without resilience only the stop at a hotzone boundary keeps the progress.
fn catch_signals(o: &ReencryptOpts) -> Result<Arc<AtomicBool>> {
    luksfuse::process::stop_flag_on_signals(o.resilience != ResilienceMode::None)
        .map_err(|e| Error::new(Kind::Usage, format!("cannot catch signals: {e}")))
}

/// Runs the conversion to its end (then finishes the header: returns true) or to a stop
/// requested by a signal (an error saying how to resume).
fn drive(
    job: Reencryption,
    image: &dyn Image,
    o: &ReencryptOpts,
    stop: &AtomicBool,
    verb: &str,
) -> Result<bool> {
    let mut job = job;
    let conv = mover::converter(&job)?;
    let opts = Options {
        hotzone: o.hotzone_size.unwrap_or(mover::DEFAULT_HOTZONE),
        keep_holes: o.keep_unallocated,
    };
    let bar = crate::tty::ByteProgress::new(verb);
    let start = Instant::now();
    let (outcome, summary) = mover::run(&mut job, image, &conv, &opts, stop, &mut |d, t| {
        bar.set(d, t)
    })?;
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    match outcome {
        Outcome::Done => {
            job.finish()?;
            eprintln!("{}", summary_line(verb, &summary, secs, true));
            Ok(true)
        }
        Outcome::Stopped => {
            eprintln!("{}", summary_line(verb, &summary, secs, false));
            Err(Error::new(
                Kind::Usage,
                "interrupted; run the same command again (or with --resume) to finish",
            ))
        }
    }
}

fn summary_line(verb: &str, s: &Summary, secs: f64, done: bool) -> String {
    let mib = s.converted as f64 / f64::from(1 << 20);
    let rate = if secs > 0.0 { mib / secs } else { 0.0 };
    let mut line = format!(
        "{} {mib:.1} MiB in {secs:.1} s ({rate:.0} MiB/s)",
        if done {
            format!("{verb} finished:")
        } else {
            format!("{verb} stopped after")
        }
    );
    if s.repaired > 0 {
        line.push_str(&format!(
            "; {:.1} MiB of an interrupted step repaired first",
            s.repaired as f64 / f64::from(1 << 20)
        ));
    }
    if s.holes > 0 {
        line.push_str(&format!(
            "; {:.1} MiB left unallocated",
            s.holes as f64 / f64::from(1 << 20)
        ));
    }
    line
}

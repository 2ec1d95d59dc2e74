//! Content sniffing for uploaded attachments (security finding SE3).
//!
//! The type of an attachment is decided only by its bytes, never by its name or by the type the
//! browser claimed. An allow-list of formats is accepted: PNG, JPEG, GIF, WebP, PDF, Office files
//! (OOXML in a ZIP, and the legacy OLE2 `.doc`/`.xls`/`.ppt`), plain ZIP and plain text (UTF-8 or
//! GBK/GB18030). Everything else is refused, and so is anything a browser could take for a web page:
//! HTML, SVG or XML markers near the start of the file, also behind an image or PDF header
//! (polyglots), as well as executables and empty files.
//!
//! Sniffing is one layer. Downloads must still be served with the sniffed `mime`, `nosniff`,
//! `Content-Disposition: attachment` and the name from [`safe_download_name`].

use crate::Msg;

/// What an attachment is, decided from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// The media type to serve it with.
    pub mime: &'static str,
    /// The file name extension it is stored and downloaded with (no dot).
    pub ext: &'static str,
    /// A short name of the format for people, the same in Chinese and English pages.
    pub label: &'static str,
}

/// How many bytes, after a leading byte-order mark and white space, are searched for markup.
const MARKUP_WINDOW: usize = 1024;

const PNG: Sniffed = Sniffed { mime: "image/png", ext: "png", label: "PNG" };
const JPEG: Sniffed = Sniffed { mime: "image/jpeg", ext: "jpg", label: "JPEG" };
const GIF: Sniffed = Sniffed { mime: "image/gif", ext: "gif", label: "GIF" };
const WEBP: Sniffed = Sniffed { mime: "image/webp", ext: "webp", label: "WebP" };
const PDF: Sniffed = Sniffed { mime: "application/pdf", ext: "pdf", label: "PDF" };
const ZIP: Sniffed = Sniffed { mime: "application/zip", ext: "zip", label: "ZIP" };
const DOCX: Sniffed = Sniffed {
    mime: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ext: "docx",
    label: "Word (DOCX)",
};
const DOCM: Sniffed =
    Sniffed { mime: "application/vnd.ms-word.document.macroEnabled.12", ext: "docm", label: "Word (DOCM)" };
const XLSX: Sniffed = Sniffed {
    mime: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ext: "xlsx",
    label: "Excel (XLSX)",
};
const XLSM: Sniffed =
    Sniffed { mime: "application/vnd.ms-excel.sheet.macroEnabled.12", ext: "xlsm", label: "Excel (XLSM)" };
const PPTX: Sniffed = Sniffed {
    mime: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ext: "pptx",
    label: "PowerPoint (PPTX)",
};
const PPTM: Sniffed = Sniffed {
    mime: "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    ext: "pptm",
    label: "PowerPoint (PPTM)",
};
const DOC: Sniffed = Sniffed { mime: "application/msword", ext: "doc", label: "Word 97-2003 (DOC)" };
const XLS: Sniffed = Sniffed { mime: "application/vnd.ms-excel", ext: "xls", label: "Excel 97-2003 (XLS)" };
const PPT: Sniffed = Sniffed { mime: "application/vnd.ms-powerpoint", ext: "ppt", label: "PowerPoint 97-2003 (PPT)" };
const TEXT_UTF8: Sniffed = Sniffed { mime: "text/plain; charset=utf-8", ext: "txt", label: "Text (UTF-8)" };
const TEXT_GBK: Sniffed = Sniffed { mime: "text/plain; charset=gb18030", ext: "txt", label: "Text (GBK)" };

const EMPTY: Msg = Msg::new("文件为空", "The file is empty");
const EXECUTABLE: Msg = Msg::new("不允许上传可执行文件或脚本程序", "Executable files are not allowed");
const MARKUP: Msg = Msg::new(
    "文件包含网页、SVG 或脚本内容，不允许上传",
    "The file contains web page, SVG or script content and is not allowed",
);
const UNSUPPORTED: Msg = Msg::new(
    "不支持的文件类型：仅允许图片（PNG、JPEG、GIF、WebP）、PDF、Office 文档、ZIP 压缩包和纯文本",
    "Unsupported file type: only images (PNG, JPEG, GIF, WebP), PDF, Office documents, ZIP archives and plain text are allowed",
);

/// Markers that make a browser render bytes as HTML, SVG or XML. Matched case-insensitively.
const MARKUP_MARKERS: &[&[u8]] = &[
    b"<html",
    b"<script",
    b"<svg",
    b"<!doctype",
    b"<?xml",
    b"<iframe",
    b"<body",
    b"<head",
    b"<meta",
    b"<object",
    b"<embed",
    b"<style",
    b"<title",
    b"<frame",
    b"<applet",
];

/// Decides what an attachment is from its bytes, or why it is refused.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, Msg> {
    if bytes.is_empty() {
        return Err(EMPTY);
    }
    if is_executable(bytes) {
        return Err(EXECUTABLE);
    }
    let binary = binary_kind(bytes);
    // Images and PDFs may carry XMP metadata (`<?xml …`) near the start; that alone is harmless once
    // the file is served with its own type. Every other marker is refused in every format.
    if has_markup(bytes, binary.is_some()) {
        return Err(MARKUP);
    }
    match binary {
        Some(Ok(kind)) => Ok(kind),
        Some(Err(msg)) => Err(msg),
        None => text_kind(bytes).ok_or(UNSUPPORTED),
    }
}

/// A file name that is safe to send in `Content-Disposition` and to save on any system: only the
/// last path component, without control, bidi or zero-width characters, quotes or characters
/// Windows forbids, at most 120 characters, ending with the extension of what the content is.
/// Chinese and other letters are kept.
pub fn safe_download_name(original: &str, sniffed: &Sniffed) -> String {
    const MAX_CHARS: usize = 120;
    let last = original.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|&c| !is_unsafe_name_char(c)).collect();
    let cleaned = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');

    // Drop the name's own extension; keep it only when it names the sniffed type.
    let (mut stem, mut ext) = (cleaned, sniffed.ext);
    if let Some((s, e)) = cleaned.rsplit_once('.')
        && (1..=8).contains(&e.len())
        && e.chars().all(|c| c.is_ascii_alphanumeric())
    {
        stem = s;
        if let Some(kept) = kept_extension(sniffed, e) {
            ext = kept;
        }
    }
    let stem = stem.trim_matches(|c: char| c.is_whitespace() || c == '.');

    let budget = MAX_CHARS - ext.chars().count() - 1;
    let mut stem: String = stem.chars().take(budget).collect();
    stem.truncate(stem.trim_end_matches(|c: char| c.is_whitespace() || c == '.').len());
    if stem.is_empty() {
        stem.push_str("附件");
    }
    if is_windows_reserved(&stem) {
        stem.insert(0, '_');
    }
    format!("{stem}.{ext}")
}

fn is_unsafe_name_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '"' | '\'' | '`' | '<' | '>' | ':' | '|' | '?' | '*' | ';' | '\\' | '/')
        // Zero-width and bidi controls: "invoice\u{202E}fdp.exe" shows as "invoiceexe.pdf".
        || matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// The original extension, lower-cased, when it is an accepted spelling for the sniffed type.
fn kept_extension(sniffed: &Sniffed, ext: &str) -> Option<&'static str> {
    let ext = ext.to_ascii_lowercase();
    let aliases: &[&'static str] = match sniffed.ext {
        "jpg" => &["jpg", "jpeg"],
        "txt" => &[
            "txt",
            "text",
            "log",
            "csv",
            "tsv",
            "conf",
            "cfg",
            "ini",
            "md",
            "json",
            "yaml",
            "yml",
            "toml",
            "properties",
            "sql",
        ],
        other => return (ext == other).then_some(sniffed.ext),
    };
    aliases.iter().find(|a| **a == ext).copied()
}

fn is_windows_reserved(stem: &str) -> bool {
    let base = stem.split('.').next().unwrap_or("").trim().to_ascii_uppercase();
    matches!(base.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((base.starts_with("COM") || base.starts_with("LPT"))
            && base.len() == 4
            && base.as_bytes()[3].is_ascii_digit())
}

fn is_executable(bytes: &[u8]) -> bool {
    const MACH_O: [[u8; 4]; 5] = [
        [0xFE, 0xED, 0xFA, 0xCE],
        [0xFE, 0xED, 0xFA, 0xCF],
        [0xCE, 0xFA, 0xED, 0xFE],
        [0xCF, 0xFA, 0xED, 0xFE],
        // Universal binaries (and Java classes).
        [0xCA, 0xFE, 0xBA, 0xBE],
    ];
    let after_bom = strip_bom(bytes);
    bytes.starts_with(b"MZ")
        || bytes.starts_with(b"\x7fELF")
        || MACH_O.iter().any(|m| bytes.starts_with(m))
        || bytes.starts_with(b"\0asm")
        || after_bom.starts_with(b"#!")
}

/// The binary formats recognised by their magic bytes: `Some(Ok)` accepted, `Some(Err)` a known
/// container refused, `None` not a binary format (maybe text).
fn binary_kind(bytes: &[u8]) -> Option<Result<Sniffed, Msg>> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Ok(PNG));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Ok(JPEG));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(Ok(GIF));
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Some(Ok(WEBP));
    }
    if bytes.starts_with(b"%PDF-") {
        return Some(Ok(PDF));
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Some(Ok(zip_kind(bytes)));
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        // OLE2 also holds installers (.msi) and mail (.msg): accept only the three Office formats,
        // recognised by their main stream's name in the directory (UTF-16LE, NUL-terminated).
        return Some(ole_kind(bytes).ok_or(UNSUPPORTED));
    }
    None
}

/// An OOXML document if the ZIP holds `[Content_Types].xml` and the parts of one application,
/// otherwise a plain ZIP. Entry names come from the local file headers and the central directory.
fn zip_kind(bytes: &[u8]) -> Sniffed {
    let (mut content_types, mut word, mut xl, mut ppt, mut macros) = (false, false, false, false, false);
    let mut visit = |name: &[u8]| {
        content_types |= name == b"[Content_Types].xml";
        word |= name.starts_with(b"word/");
        xl |= name.starts_with(b"xl/");
        ppt |= name.starts_with(b"ppt/");
        macros |= name.ends_with(b"/vbaProject.bin");
    };
    for (sig, len_at, name_at) in [(b"PK\x03\x04", 26, 30), (b"PK\x01\x02", 28, 46)] {
        let mut from = 0;
        while let Some(pos) = find(&bytes[from..], sig) {
            let at = from + pos;
            if let Some(len) = bytes.get(at + len_at..at + len_at + 2) {
                let len = u16::from_le_bytes([len[0], len[1]]) as usize;
                if let Some(name) = bytes.get(at + name_at..at + name_at + len) {
                    visit(name);
                }
            }
            from = at + sig.len();
        }
    }
    match (content_types, word, xl, ppt, macros) {
        (true, true, false, false, false) => DOCX,
        (true, true, false, false, true) => DOCM,
        (true, false, true, false, false) => XLSX,
        (true, false, true, false, true) => XLSM,
        (true, false, false, true, false) => PPTX,
        (true, false, false, true, true) => PPTM,
        _ => ZIP,
    }
}

fn ole_kind(bytes: &[u8]) -> Option<Sniffed> {
    let utf16 = |name: &str| -> Vec<u8> { name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect() };
    if find(bytes, &utf16("WordDocument")).is_some() {
        Some(DOC)
    } else if find(bytes, &utf16("Workbook")).is_some() || find(bytes, &utf16("Book")).is_some() {
        Some(XLS)
    } else if find(bytes, &utf16("PowerPoint Document")).is_some() {
        Some(PPT)
    } else {
        None
    }
}

/// Plain text: UTF-8 (an incomplete character at the very end is allowed: logs are cut anywhere)
/// or GBK/GB18030, without NUL and with almost no other control characters.
fn text_kind(bytes: &[u8]) -> Option<Sniffed> {
    let body = strip_bom(bytes);
    if body.contains(&0) {
        return None;
    }
    let odd = body.iter().filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | 0x1B)).count();
    if odd * 100 > body.len() {
        return None;
    }
    match std::str::from_utf8(body) {
        Ok(_) => return Some(TEXT_UTF8),
        Err(e) if e.error_len().is_none() => return Some(TEXT_UTF8),
        Err(_) => {}
    }
    looks_gb18030(body).then_some(TEXT_GBK)
}

/// Whether the bytes follow GBK/GB18030's structure: ASCII, two-byte pairs (lead 0x81–0xFE, trail
/// 0x40–0xFE but not 0x7F) and four-byte sequences (lead, 0x30–0x39, 0x81–0xFE, 0x30–0x39).
fn looks_gb18030(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            continue;
        }
        if !(0x81..=0xFE).contains(&b) {
            return false;
        }
        let Some(&b2) = bytes.get(i + 1) else { return true };
        if (0x40..=0xFE).contains(&b2) && b2 != 0x7F {
            i += 2;
        } else if (0x30..=0x39).contains(&b2) {
            match (bytes.get(i + 2), bytes.get(i + 3)) {
                (Some(0x81..=0xFE), Some(0x30..=0x39)) => i += 4,
                (None, _) | (Some(0x81..=0xFE), None) => return true,
                _ => return false,
            }
        } else {
            return false;
        }
    }
    true
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes)
}

/// Whether any marker occurs in the first [`MARKUP_WINDOW`] bytes after leading byte-order marks,
/// white space and NUL bytes (browsers skip them before sniffing). NUL bytes inside the window are
/// dropped too, so UTF-16 markup is found as well.
fn has_markup(bytes: &[u8], allow_xml_declaration: bool) -> bool {
    let mut rest = bytes;
    loop {
        let before = rest.len();
        for bom in [&[0xEF, 0xBB, 0xBF][..], &[0xFF, 0xFE], &[0xFE, 0xFF]] {
            rest = rest.strip_prefix(bom).unwrap_or(rest);
        }
        while let [b, tail @ ..] = rest
            && (b.is_ascii_whitespace() || *b == 0)
        {
            rest = tail;
        }
        if rest.len() == before {
            break;
        }
    }
    let window: Vec<u8> =
        rest.iter().take(MARKUP_WINDOW).filter(|&&b| b != 0).map(|b| b.to_ascii_lowercase()).collect();
    MARKUP_MARKERS.iter().filter(|m| !(allow_xml_declaration && **m == b"<?xml")).any(|m| find(&window, m).is_some())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            Some(p) => i += p,
            None => return None,
        }
        if &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(bytes: &[u8]) -> Msg {
        sniff(bytes).expect_err("must be refused")
    }

    fn ext(bytes: &[u8]) -> &'static str {
        sniff(bytes).expect("must be accepted").ext
    }

    /// A ZIP local file header for a stored entry, then its data.
    fn zip_entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = b"PK\x03\x04".to_vec();
        v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version … crc32
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v: Vec<u8> = entries.iter().flat_map(|(n, d)| zip_entry(n, d)).collect();
        v.extend_from_slice(b"PK\x05\x06");
        v.extend_from_slice(&[0; 18]);
        v
    }

    fn ole(stream: &str) -> Vec<u8> {
        let mut v = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        v.extend_from_slice(&[0; 504]);
        v.extend(stream.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
        v.extend_from_slice(&[0; 64]);
        v
    }

    #[test]
    fn images_are_accepted_by_magic_bytes() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&[0x00, 0x9C, 0xFF, 0x3C, 0x12]);
        assert_eq!(sniff(&png).unwrap(), PNG);
        assert_eq!(ext(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0]), "jpg");
        assert_eq!(ext(b"GIF87a\x01\0\x01\0\x80\0\0"), "gif");
        assert_eq!(ext(b"GIF89a\x01\0\x01\0\x80\0\0\xff\xff\xff\0\0\0!\xf9\x04;"), "gif");
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0").unwrap().mime, "image/webp");
        // RIFF alone (a WAV file) is not WebP.
        assert_eq!(refused(b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0"), UNSUPPORTED);
    }

    #[test]
    fn jpeg_with_xmp_metadata_is_accepted() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x01, 0x00];
        jpeg.extend_from_slice(
            b"http://ns.adobe.com/xap/1.0/\0<?xml version=\"1.0\"?><x:xmpmeta xmlns:x=\"adobe:ns:meta/\">",
        );
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(ext(&jpeg), "jpg");
    }

    #[test]
    fn pdf_is_accepted() {
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n%%EOF\n";
        assert_eq!(sniff(pdf).unwrap(), PDF);
    }

    #[test]
    fn office_files_are_told_apart_by_their_parts() {
        let ct: &[u8] = b"\x78\x9c\x01\x02"; // compressed bytes, not text
        let docx = zip(&[("[Content_Types].xml", ct), ("_rels/.rels", ct), ("word/document.xml", ct)]);
        assert_eq!(sniff(&docx).unwrap(), DOCX);
        let xlsx = zip(&[("[Content_Types].xml", ct), ("xl/workbook.xml", ct), ("xl/worksheets/sheet1.xml", ct)]);
        assert_eq!(sniff(&xlsx).unwrap(), XLSX);
        let pptx = zip(&[("[Content_Types].xml", ct), ("ppt/presentation.xml", ct)]);
        assert_eq!(sniff(&pptx).unwrap(), PPTX);
        let xlsm = zip(&[("[Content_Types].xml", ct), ("xl/workbook.xml", ct), ("xl/vbaProject.bin", ct)]);
        assert_eq!(ext(&xlsm), "xlsm");
        // Word parts without [Content_Types].xml, or an ordinary archive: a plain ZIP.
        assert_eq!(sniff(&zip(&[("word/document.xml", ct)])).unwrap(), ZIP);
        assert_eq!(sniff(&zip(&[("logs/app.log", &b"started"[..])])).unwrap(), ZIP);
        // An empty archive is only the end-of-central-directory record.
        assert_eq!(ext(&zip(&[])[..]), "zip");
        // A stored docx whose first part is XML (`<?xml`) is still a docx.
        let stored =
            zip(&[("[Content_Types].xml", &b"<?xml version=\"1.0\"?><Types/>"[..]), ("word/document.xml", ct)]);
        assert_eq!(ext(&stored), "docx");
    }

    #[test]
    fn legacy_office_needs_its_main_stream() {
        assert_eq!(sniff(&ole("WordDocument")).unwrap(), DOC);
        assert_eq!(sniff(&ole("Workbook")).unwrap(), XLS);
        assert_eq!(sniff(&ole("PowerPoint Document")).unwrap(), PPT);
        // An installer or any other compound file is refused.
        assert_eq!(refused(&ole("\u{4840}\u{3b3f}")), UNSUPPORTED);
    }

    #[test]
    fn utf8_chinese_text_is_accepted() {
        let text = "2026-11-02 09:15:01 巡检完成：核心交换机 CPU 12%，内存 41%。\n设备：华为 S12708\n".as_bytes();
        let s = sniff(text).unwrap();
        assert_eq!((s.mime, s.ext), ("text/plain; charset=utf-8", "txt"));
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice("名称,数量\n服务器,3\n".as_bytes());
        assert_eq!(sniff(&bom).unwrap(), TEXT_UTF8);
        // A log cut in the middle of a character.
        let cut = &"日志".as_bytes()[..4];
        assert_eq!(sniff(cut).unwrap(), TEXT_UTF8);
        // Configuration files and logs with colours are text too.
        assert_eq!(ext(b"[server]\nlisten = 0.0.0.0:8080\n# comment\n"), "txt");
        assert_eq!(ext(b"\x1b[32mINFO\x1b[0m ready\r\n"), "txt");
    }

    #[test]
    fn gbk_text_is_accepted() {
        // "运维日志：正常" in GBK, then a GB18030 four-byte sequence.
        let gbk = b"\xd4\xcb\xce\xac\xc8\xd5\xd6\xbe\xa3\xba\xd5\xfd\xb3\xa3\r\n\x81\x30\x81\x30\n";
        assert_eq!(sniff(gbk).unwrap(), TEXT_GBK);
        // Bytes that fit neither encoding are not text.
        assert_eq!(refused(b"abc\x80\x80\xff def"), UNSUPPORTED);
    }

    #[test]
    fn binary_junk_is_refused() {
        assert_eq!(refused(b"\x00\x01\x02\x03binary"), UNSUPPORTED);
        assert_eq!(refused(b"text with a NUL\0 inside"), UNSUPPORTED);
        assert_eq!(refused(b"\x01\x02\x03\x04\x05\x06\x07\x08abc"), UNSUPPORTED);
        // UTF-16 text has NUL bytes: not accepted as text.
        assert_eq!(refused(b"\xff\xfeh\0i\0"), UNSUPPORTED);
    }

    #[test]
    fn empty_file_is_refused() {
        assert_eq!(refused(b""), EMPTY);
    }

    #[test]
    fn executables_are_refused() {
        let mut pe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
        pe.extend_from_slice(&[0; 44]);
        pe.extend_from_slice(&0x80u32.to_le_bytes());
        pe.resize(0x80, 0);
        pe.extend_from_slice(b"PE\0\0\x64\x86");
        assert_eq!(refused(&pe), EXECUTABLE);
        assert_eq!(refused(b"\x7fELF\x02\x01\x01\0"), EXECUTABLE);
        assert_eq!(refused(&[0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1]), EXECUTABLE);
        assert_eq!(refused(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]), EXECUTABLE);
        assert_eq!(refused(b"#!/bin/sh\nrm -rf /\n"), EXECUTABLE);
        assert_eq!(refused(b"\xef\xbb\xbf#!/usr/bin/env python3\n"), EXECUTABLE);
        assert_eq!(refused(b"\0asm\x01\0\0\0"), EXECUTABLE);
    }

    #[test]
    fn html_is_refused_whatever_the_name() {
        // Content of a file uploaded as "photo.png": the name plays no part.
        assert_eq!(refused(b"<html><body><script>alert(document.cookie)</script></body></html>"), MARKUP);
        assert_eq!(refused(b"<!DOCTYPE html>\n<title>x</title>"), MARKUP);
        assert_eq!(refused(b"\xef\xbb\xbf \r\n\t <HtMl>"), MARKUP);
        assert_eq!(refused(b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"), MARKUP);
        assert_eq!(refused(b"<?xml version=\"1.0\"?><root/>"), MARKUP);
        assert_eq!(refused(b"some notes\n<iframe src=//evil>"), MARKUP);
        for tag in ["<head>", "<meta charset=utf-8>", "<object data=x>", "<embed src=x>", "<ScRiPt>"] {
            assert_eq!(refused(format!("log line\n{tag}\n").as_bytes()), MARKUP, "{tag}");
        }
    }

    #[test]
    fn markup_after_long_white_space_or_in_utf16_is_refused() {
        let mut padded = vec![b' '; 4096];
        padded.extend_from_slice(b"\n<html><script>alert(1)</script>");
        assert_eq!(refused(&padded), MARKUP);
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain("<html>".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(refused(&utf16), MARKUP);
    }

    #[test]
    fn markup_beyond_the_first_kib_of_text_is_plain_text() {
        let mut text = "正常日志\n".repeat(200).into_bytes();
        assert!(text.len() > MARKUP_WINDOW);
        text.extend_from_slice(b"<script>");
        assert_eq!(sniff(&text).unwrap(), TEXT_UTF8);
    }

    #[test]
    fn polyglots_are_refused() {
        assert_eq!(refused(b"GIF89a/*\x01\0\x01\0\0\0\0;*/=1;<script>alert(1)</script>"), MARKUP);
        assert_eq!(refused(b"GIF89a\x01\0\x01\0<html><body>hi"), MARKUP);
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(b"tEXt<SCRIPT src=//x></SCRIPT>");
        assert_eq!(refused(&png), MARKUP);
        assert_eq!(refused(b"%PDF-1.4\n<html><script>alert(1)</script>"), MARKUP);
        assert_eq!(refused(&[0xFF, 0xD8, 0xFF, 0xFE, 0, 8, b'<', b's', b'v', b'g', b'>']), MARKUP);
        let zip_html = zip(&[("index.html", &b"<html><script>alert(1)</script>"[..])]);
        assert_eq!(refused(&zip_html), MARKUP);
    }

    #[test]
    fn download_names_are_cleaned_and_end_with_the_sniffed_type() {
        assert_eq!(safe_download_name("巡检报告 2026年11月.PNG", &PNG), "巡检报告 2026年11月.png");
        assert_eq!(safe_download_name("C:\\Users\\张三\\桌面\\photo.html", &PNG), "photo.png");
        assert_eq!(safe_download_name("../../etc/passwd", &TEXT_UTF8), "passwd.txt");
        assert_eq!(safe_download_name("a\"b'c\r\nd<e>.pdf", &PDF), "abcde.pdf");
        assert_eq!(safe_download_name("invoice\u{202E}fdp.exe", &PDF), "invoicefdp.pdf");
        assert_eq!(safe_download_name("scan.jpeg", &JPEG), "scan.jpeg");
        assert_eq!(safe_download_name("scan.gif", &JPEG), "scan.jpg");
        assert_eq!(safe_download_name("nginx.conf", &TEXT_GBK), "nginx.conf");
        assert_eq!(safe_download_name("资产清单.CSV", &TEXT_UTF8), "资产清单.csv");
        assert_eq!(safe_download_name("run.bat", &TEXT_UTF8), "run.txt");
        assert_eq!(safe_download_name("report.xlsx.exe", &XLSX), "report.xlsx.xlsx");
        assert_eq!(safe_download_name("合同 v1.2", &DOCX), "合同 v1.docx");
        assert_eq!(safe_download_name("", &PDF), "附件.pdf");
        assert_eq!(safe_download_name("  ...  ", &PDF), "附件.pdf");
        assert_eq!(safe_download_name(".htaccess", &TEXT_UTF8), "htaccess.txt");
        assert_eq!(safe_download_name("con.txt", &TEXT_UTF8), "_con.txt");
        assert_eq!(safe_download_name("COM1", &ZIP), "_COM1.zip");
        let long = "很".repeat(300) + ".pdf";
        let name = safe_download_name(&long, &PDF);
        assert_eq!(name.chars().count(), 120);
        assert!(name.ends_with("很.pdf"));
    }
}

//! Sets of characters the validators and the OpenAPI patterns both read, so the two agree.
//!
//! A set is a list of inclusive ranges. [`class`] renders a set as a regular-expression
//! character class that Python's `re` (schemathesis), Rust's `regex` (jsonschema-rs) and
//! ECMAScript with the `u` flag read alike, except astral characters (`\U000E0001`), which
//! ECMAScript spells `\u{E0001}`.

/// An inclusive range of characters.
pub type Range = (char, char);

/// Unicode `White_Space`: exactly what `str::trim` removes (a test checks).
pub const WHITE_SPACE: &[Range] = &[
    ('\u{9}', '\u{D}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{A0}', '\u{A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];

/// Unicode category Cc: exactly what `char::is_control` is true for (a test checks).
pub const CONTROL: &[Range] = &[('\u{0}', '\u{1F}'), ('\u{7F}', '\u{9F}')];

/// The bidirectional embedding, override and isolate controls: text holding them can show
/// its characters in another order than they are stored (`\u{202E}` "gnp.exe").
pub const BIDI_CONTROL: &[Range] = &[('\u{202A}', '\u{202E}'), ('\u{2066}', '\u{2069}')];

/// Characters that show nothing: Unicode category Cf (format characters: zero-width space and
/// joiners, soft hyphen, byte order mark, bidirectional marks, tag characters) without
/// [`BIDI_CONTROL`], and the fillers that render blank (Hangul fillers, the combining
/// grapheme joiner, Khmer inherent vowels, the blank Braille pattern). `\u{E007F}` (cancel
/// tag) is left out: it ends every subdivision flag emoji.
pub const INVISIBLE: &[Range] = &[
    ('\u{AD}', '\u{AD}'),
    ('\u{34F}', '\u{34F}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{206A}', '\u{206F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007E}'),
];

/// Whether `c` is in the set `ranges`.
pub fn contains(ranges: &[Range], c: char) -> bool {
    ranges.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// A character class of the characters in any of `sets` (`negated`: of all the others).
/// `extra` is added as is: already escaped class syntax.
pub fn class(sets: &[&[Range]], extra: &str, negated: bool) -> String {
    let mut out = String::from(if negated { "[^" } else { "[" });
    for &(low, high) in sets.iter().flat_map(|set| set.iter()) {
        out.push_str(&escape(low));
        if high != low {
            out.push('-');
            out.push_str(&escape(high));
        }
    }
    out.push_str(extra);
    out.push(']');
    out
}

fn escape(c: char) -> String {
    match u32::from(c) {
        n @ 0..=0xFFFF => format!("\\u{n:04X}"),
        n => format!("\\U{n:08X}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_char() -> impl Iterator<Item = char> {
        (0..=0x10FFFF).filter_map(char::from_u32)
    }

    #[test]
    fn white_space_is_what_trim_removes_and_control_is_cc() {
        for c in every_char() {
            assert_eq!(contains(WHITE_SPACE, c), c.is_whitespace(), "{c:?}");
            assert_eq!(contains(CONTROL, c), c.is_control(), "{c:?}");
        }
    }

    #[test]
    fn classes_render_escaped_ranges() {
        assert_eq!(
            class(&[BIDI_CONTROL], "@", false),
            r"[\u202A-\u202E\u2066-\u2069@]"
        );
        assert_eq!(
            class(&[&[('\u{E0001}', '\u{E0001}')]], "", true),
            r"[^\U000E0001]"
        );
    }
}

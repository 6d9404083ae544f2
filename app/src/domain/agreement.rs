//! A test helper: a validator and the pattern the OpenAPI document gives for it must agree.

/// Pieces random test strings are made of: plain text, the punctuation of an address, and
/// every kind of character the validators treat specially.
const PIECES: &[&str] = &[
    "a",
    "Z",
    "é",
    "0",
    "9",
    "-",
    "_",
    ".",
    "@",
    "example",
    "co",
    "xn--bcher-kva",
    "👩",
    "+",
    " ",
    "  ",
    "\t",
    "\n",
    "\r",
    "\u{B}",
    "\u{85}",
    "\u{A0}",
    "\u{3000}",
    "\u{1}",
    "\u{7F}",
    "\u{9F}",
    "\u{AD}",
    "\u{200B}",
    "\u{200D}",
    "\u{200E}",
    "\u{202E}",
    "\u{2066}",
    "\u{2069}",
    "\u{FEFF}",
    "\u{3164}",
    "\u{2800}",
    "\u{E0041}",
    "\u{E007F}",
    "\"",
    "<",
    "(",
    "[",
    "]",
    "\\",
    ",",
    ";",
    ":",
    "e\u{301}",
];

/// Checks, over hand-picked and random strings, that `pattern` (plus a maximum length of
/// `max_chars` characters) matches exactly the strings `accepts` accepts.
pub fn assert_pattern_agrees(pattern: &str, max_chars: usize, accepts: impl Fn(&str) -> bool) {
    let regex = regex::Regex::new(pattern).expect("the pattern compiles in Rust's regex");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: usize| {
        // xorshift64*: deterministic, so a failure reproduces.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
    };
    let mut samples: Vec<String> = vec![
        String::new(),
        "ann@example.com".into(),
        format!("{}@example.com", "a".repeat(64)),
        format!("{}@example.com", "a".repeat(65)),
        format!("a@{}.com", "b".repeat(63)),
        format!("a@{}.com", "b".repeat(64)),
        "n".repeat(100),
        "n".repeat(101),
        format!("  {}  ", "n".repeat(100)),
        format!("{}x", " ".repeat(max_chars)),
    ];
    for _ in 0..50_000 {
        let pieces = 1 + next(12);
        let mut sample: String = (0..pieces).map(|_| PIECES[next(PIECES.len())]).collect();
        if next(20) == 0 {
            sample = sample.repeat(1 + next(60));
        }
        samples.push(sample);
    }
    for sample in &samples {
        let by_pattern = regex.is_match(sample) && sample.chars().count() <= max_chars;
        assert_eq!(
            by_pattern,
            accepts(sample),
            "pattern and validator disagree on {sample:?}"
        );
    }
}

//! How hard to guess a shared secret must be: the HTTP API's token
//! (`FLUIDTALK_RUNNER_TOKEN`) and the webhook's signing secret. Either one lets whoever
//! holds it act as the runner or as its webhook, and it is typed by a person, so a weak one
//! is refused at start, with a way to make a good one: at least `MIN_LEN` characters, not
//! a short pattern repeated (`aaaa…`, `abcabc…`, `0123456789abcdef0123…`), not a run of
//! consecutive characters, and at least `MIN_DISTINCT` different characters (random hex
//! of that length has about 16).

/// The fewest characters a secret may have.
pub const MIN_LEN: usize = 32;
/// The fewest different characters a secret may hold.
pub const MIN_DISTINCT: usize = 10;
/// How to make a good one.
pub const HOW: &str = "make one with `openssl rand -hex 32`";

/// Why a secret is too easy to guess. Each names the variable `var` that holds it and how
/// to make a good one, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    #[error("{var} is {len} characters long; it must have at least {MIN_LEN}: {HOW}")]
    TooShort { var: String, len: usize },
    #[error("{var} repeats a pattern of {period} character(s): it is easy to guess; {HOW}")]
    Repeats { var: String, period: usize },
    #[error("{var} is a run of consecutive characters: it is easy to guess; {HOW}")]
    Consecutive { var: String },
    #[error(
        "{var} holds only {distinct} different characters (at least {MIN_DISTINCT}): it is easy to guess; {HOW}"
    )]
    FewDistinct { var: String, distinct: usize },
}

/// Whether `value`, held by the environment variable `var`, is strong enough; the error
/// names the variable and says what is wrong and how to make a good one, never the value.
pub fn check(var: &str, value: &str) -> Result<(), WeakSecret> {
    let var = var.to_string();
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < MIN_LEN {
        return Err(WeakSecret::TooShort {
            var,
            len: chars.len(),
        });
    }
    let period =
        (1..=chars.len() / 2).find(|&p| chars.iter().zip(&chars[p..]).all(|(a, b)| a == b));
    if let Some(period) = period {
        return Err(WeakSecret::Repeats { var, period });
    }
    let step = u32::from(chars[1]).wrapping_sub(u32::from(chars[0]));
    if chars
        .windows(2)
        .all(|w| u32::from(w[1]).wrapping_sub(u32::from(w[0])) == step)
    {
        return Err(WeakSecret::Consecutive { var });
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Err(WeakSecret::FewDistinct {
            var,
            distinct: distinct.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_secrets_pass_and_guessable_ones_are_refused_with_a_way_out() {
        for good in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "Zm9vYmFyYmF6cXV4cXV1eHF1dXgxMjM0NTY3ODkwYWI=",
            "3f2a9c1e-5b2d-4e8f-a6c7-0d9e8f7a6b5c",
        ] {
            assert_eq!(check("T", good), Ok(()), "{good}");
        }
        let run: String = (b'0'..=b'0' + 32).map(char::from).collect();
        for (bad, why) in [
            ("aaaaaaaaaaaaaaaa", "16 characters long"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "pattern of 1"),
            ("0123456789abcdef0123456789abcdef", "pattern of 16"),
            (run.as_str(), "consecutive"),
            (
                "aaaabbbbaaaabbbbaaaabbbbccccddddaaaa",
                "different characters",
            ),
        ] {
            let e = check("FLUIDTALK_RUNNER_TOKEN", bad)
                .expect_err(bad)
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                e.contains("FLUIDTALK_RUNNER_TOKEN") && e.contains("openssl rand -hex 32"),
                "{e}"
            );
            assert!(!e.contains(bad), "the error shows no secret: {e}");
        }
    }
}

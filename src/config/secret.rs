//! Secrets (passwords, tokens): given inline, in a file (systemd credentials) or in an
//! environment variable, and never shown: `Secret`'s Debug and Display print `***`.

use std::path::PathBuf;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Empty or only white space: no token at all (three spaces open nothing).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from; a file wins over a variable, which wins over the value.
#[derive(Clone, Debug, Default)]
pub struct SecretSource {
    pub inline: Option<Secret>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

impl SecretSource {
    pub fn new(inline: Option<String>, file: Option<PathBuf>, env: Option<String>) -> Self {
        SecretSource {
            inline: inline.map(Secret::new),
            file,
            env,
        }
    }

    pub fn is_given(&self) -> bool {
        self.inline.is_some() || self.file.is_some() || self.env.is_some()
    }

    /// Reads the secret now; `key` names it in errors ("token": `token_file ...`).
    pub fn resolve(&self, key: &str) -> anyhow::Result<Option<Secret>> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "{key}_file {}: {e}; point it at a readable file holding the {key}",
                    path.display()
                )
            })?;
            return Ok(Some(Secret(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )));
        }
        if let Some(variable) = &self.env {
            let value = std::env::var(variable).map_err(|_| {
                anyhow::anyhow!("{key}_env: the environment variable {variable} is not set")
            })?;
            return Ok(Some(Secret(value)));
        }
        Ok(self.inline.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_is_no_secret() {
        assert!(Secret::from("   ").is_empty());
        assert!(Secret::from("\t\n").is_empty());
        assert!(!Secret::from(" x ").is_empty());
    }

    #[test]
    fn a_secret_is_never_shown() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let source = SecretSource::new(Some("hunter2".into()), None, None);
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(
            source.resolve("token").unwrap().unwrap().expose(),
            "hunter2"
        );
    }
}

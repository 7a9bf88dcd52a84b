//! Log output: env_logger's text lines, or one JSON object per line (`time`, `level`,
//! `target`, `message`, `fields`) for log collectors. `serve --log-format` picks; without it
//! the text form goes to a terminal and JSON everywhere else (journald, containers).

use std::io::{IsTerminal, Write};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not one of text, json")),
        }
    }
}

/// Starts logging at `level` (RUST_LOG overrides it) in `format`, or the default for stderr.
pub fn init(level: &str, format: Option<LogFormat>) {
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let mut fields = serde_json::Map::new();
            let _ = record.key_values().visit(&mut Fields(&mut fields));
            let line = serde_json::json!({
                "time": buf.timestamp_millis().to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
                "fields": fields,
            });
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

/// Collects a record's key-value pairs as JSON strings.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0
            .insert(key.to_string(), serde_json::Value::from(value.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}

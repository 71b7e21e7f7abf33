//! END (5.4.9): the session ends; the client processes the rest of the package and sends no Package#3.

use super::{CommandError, ParameterReader};

/// Reads END's parameters: there are none, and
/// [`Command::from_json`](super::Command::from_json) refuses any that are
/// left over. The command itself is the unit variant
/// [`Command::End`](super::Command::End).
///
/// ```text
/// ["END"]
/// ```
pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<(), CommandError> {
    reader.expect("no parameters");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_without_parameters_only() {
        assert_eq!(Command::from_json(&json!(["END"])), Ok(Command::End));
        assert_eq!(Command::End.to_json(), json!(["END"]));
        assert!(Command::End.parameters().is_empty());
        let error = Command::from_json(&json!(["END", ""])).err();
        assert_eq!(
            error,
            Some(CommandError::WrongParameterCount { command: "END", expected: "no parameters", found: 1 })
        );
    }
}

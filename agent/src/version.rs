//! Reading the app version from its configured source.

use std::time::Duration;

use crate::config::VersionSource;

/// Longest time a `version_command` may take.
const VERSION_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns the current app version, or why it could not be read.
pub async fn read(source: &VersionSource) -> Result<String, String> {
    match source {
        VersionSource::Fixed(version) => Ok(version.clone()),
        VersionSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .map(|text| text.trim().to_owned())
            .map_err(|err| format!("cannot read version_file {}: {err}", path.display())),
        VersionSource::Command(argv) => {
            let output = tokio::time::timeout(
                VERSION_COMMAND_TIMEOUT,
                tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| "version_command timed out".to_owned())?
            .map_err(|err| format!("cannot run version_command: {err}"))?;
            if !output.status.success() {
                return Err(format!("version_command failed: {}", output.status));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
    }
}

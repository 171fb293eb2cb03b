//! Client commands: they speak the Kafka protocol to a broker (dump-log reads a file).

/// The client subcommands of the `gregor` binary.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Placeholder while the client tools are written.
    #[command(hide = true)]
    Placeholder,
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Placeholder => Ok(()),
    }
}

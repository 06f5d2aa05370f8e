fn main() -> anyhow::Result<()> {
    torrentdrive::cli::main()
}

fn main() {
    if let Err(e) = torrentdrive::cli::main() {
        // One line with the causes, without a backtrace: this is for people.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

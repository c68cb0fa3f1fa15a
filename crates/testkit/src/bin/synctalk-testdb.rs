//! `synctalk-testdb`: prints the URL of a freshly migrated database on the test cluster
//! (or on `DATABASE_URL`'s server), for tools such as `diesel print-schema` in CI.
//! The database is named `synctalk_schema_check` and replaced on every run.

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("synctalk-testdb: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(synctalk_testkit::schema_check_database()) {
        Ok(url) => {
            println!("{url}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("synctalk-testdb: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

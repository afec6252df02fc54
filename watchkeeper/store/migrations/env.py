"""Alembic environment: migrations run on the engine Watchkeeper hands over.

SQLite alters a table by building a new copy and dropping the old one (batch mode).
With foreign keys enforced, dropping a table that other rows refer to fails (a
database with users, sessions and tokens could not be upgraded), so enforcement is
off while migrations run, outside their transaction where SQLite accepts the switch,
and every reference is checked before the transaction commits."""

from alembic import context

from watchkeeper.store.models import Base

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"
with engine.connect() as connection:
    driver = connection.connection.dbapi_connection if sqlite else None
    if driver is not None:
        driver.execute("PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
            )
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke references: {broken[:5]}")
    finally:
        if driver is not None:
            driver.execute("PRAGMA foreign_keys=ON")

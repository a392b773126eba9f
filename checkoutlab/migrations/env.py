"""Alembic environment: the engine comes from ``checkoutlab.db.upgrade`` or the settings."""

from __future__ import annotations

from alembic import context

from checkoutlab.db import Base, import_models, make_engine

import_models()
target_metadata = Base.metadata
config = context.config
engine = config.attributes.get("engine")
if engine is None:
    from checkoutlab.config import get_settings

    engine = make_engine(get_settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

"""The controller: one process that registers engines, queues commands per engine,
relays them, and keeps results until clients fetch them."""

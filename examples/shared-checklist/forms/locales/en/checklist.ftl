item-title = Checklist item
item-text = What
item-done = Done
item-due = Due by (optional)
item-note = Note (optional)

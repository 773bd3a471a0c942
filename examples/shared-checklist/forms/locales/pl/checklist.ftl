item-title = Pozycja listy
item-text = Co
item-done = Zrobione
item-due = Termin (opcjonalnie)
item-note = Notatka (opcjonalnie)

item-title = عنصر في القائمة
item-text = ماذا
item-done = تم
item-due = الموعد (اختياري)
item-note = ملاحظة (اختياري)

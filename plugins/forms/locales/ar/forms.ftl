form-error-required = الحقل «{ $label }» مطلوب.
form-error-type = يجب أن يكون «{ $label }» { $type ->
    [number] رقمًا
    [integer] عددًا صحيحًا
    [boolean] نعم أو لا
    [array] قائمة
   *[other] نصًا
}.
form-error-max-length = «{ $label }»: { $limit ->
    [zero] بلا أحرف
    [one] حرف واحد على الأكثر
    [two] حرفان على الأكثر
    [few] { $limit } أحرف على الأكثر
    [many] { $limit } حرفًا على الأكثر
   *[other] { $limit } حرف على الأكثر
}.
form-error-min-length = «{ $label }»: { $limit ->
    [zero] بلا أحرف
    [one] حرف واحد على الأقل
    [two] حرفان على الأقل
    [few] { $limit } أحرف على الأقل
    [many] { $limit } حرفًا على الأقل
   *[other] { $limit } حرف على الأقل
}.
form-error-pattern = «{ $label }» ليس بالصيغة المتوقعة.
form-error-format = «{ $label }» ليس { $format ->
    [email] عنوان بريد إلكتروني صالحًا
   *[date] تاريخًا صالحًا
}.
form-error-minimum = يجب أن يكون «{ $label }» { $limit } على الأقل.
form-error-maximum = يجب أن يكون «{ $label }» { $limit } على الأكثر.
form-error-enum = «{ $label }»: اختر أحد الخيارات.
form-error-min-items = «{ $label }»: اختر { $limit ->
    [zero] بلا عناصر
    [one] عنصرًا واحدًا على الأقل
    [two] عنصرين على الأقل
    [few] { $limit } عناصر على الأقل
    [many] { $limit } عنصرًا على الأقل
   *[other] { $limit } عنصر على الأقل
}.
form-error-max-items = «{ $label }»: اختر { $limit ->
    [zero] بلا عناصر
    [one] عنصرًا واحدًا على الأكثر
    [two] عنصرين على الأكثر
    [few] { $limit } عناصر على الأكثر
    [many] { $limit } عنصرًا على الأكثر
   *[other] { $limit } عنصر على الأكثر
}.
form-error-unique-items = «{ $label }»: كل عنصر مرة واحدة فقط.
form-error-attachment = «{ $label }»: لم يُرفع هذا الملف لهذا النموذج، أو أُرسل من قبل. ارفعه مرة أخرى.
form-error-attachment-incomplete = «{ $label }»: لم يكتمل رفع هذا الملف بعد.
form-error-schema = قيمة «{ $label }» غير مقبولة.
form-error-additional-properties = لا يحتوي هذا النموذج على هذا الحقل.
form-error-not-an-object = يجب أن تكون بيانات النموذج كائن JSON.

## The form's page.

form-submit = إرسال
form-required = مطلوب
form-choose = اختر…
form-errors = { $count ->
    [zero] لا توجد مشكلات
    [one] توجد مشكلة في إجابة واحدة
    [two] توجد مشكلتان في إجابتين
    [few] توجد مشكلات في { $count } إجابات
    [many] توجد مشكلات في { $count } إجابة
   *[other] توجد مشكلات في { $count } إجابة
}
form-honeypot = اترك هذا الحقل فارغًا
form-expired = ظل النموذج مفتوحًا طويلًا أو تغيّر. راجع إجاباتك وأرسله مرة أخرى.
form-sent = شكرًا لك. لقد تلقينا رسالتك.
form-send-another = إرسال رسالة أخرى

## Files on the form's page: the page's script uploads each one (resumably)
## before the form is sent. $name, $percent and $reason are filled in by the
## script.

form-file-needs-script = يتطلب إرفاق الملفات تفعيل JavaScript.
form-file-uploading = جارٍ رفع { $name }: { $percent }٪
form-file-attached = أُرفق { $name }.
form-file-failed = لم يُرفق { $name }: { $reason }
form-file-remove = إزالة
form-file-too-many = يمكنك إرفاق { $limit ->
    [zero] لا ملفات
    [one] ملف واحد على الأكثر
    [two] ملفين على الأكثر
    [few] { $limit } ملفات على الأكثر
    [many] { $limit } ملفًا على الأكثر
   *[other] { $limit } ملف على الأكثر
}.
form-file-kept = ملف أرفقته
form-check-failed = لم يُنهِ متصفحك التحقق قبل إرسال النموذج. أرسله مرة أخرى.
form-checking = جارٍ التحقق من المتصفح قبل الإرسال…

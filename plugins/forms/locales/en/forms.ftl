# The forms plugin's own messages: what a field's constraint says when it
# fails. Every message gets the field's label as $label (but
# form-error-additional-properties and form-error-not-an-object, which are
# about no field) and the constraint's values ($limit, $format, $type).

form-error-required = { $label } is required.
form-error-type = { $label } must be { $type ->
    [number] a number
    [integer] a whole number
    [boolean] yes or no
    [array] a list
   *[other] text
}.
form-error-max-length = { $label }: at most { $limit ->
    [one] { $limit } character
   *[other] { $limit } characters
}.
form-error-min-length = { $label }: at least { $limit ->
    [one] { $limit } character
   *[other] { $limit } characters
}.
form-error-pattern = { $label } is not in the expected form.
form-error-format = { $label } is not a valid { $format ->
    [email] e-mail address
   *[date] date
}.
form-error-minimum = { $label } must be at least { $limit }.
form-error-maximum = { $label } must be at most { $limit }.
form-error-enum = { $label }: choose one of the options.
form-error-min-items = { $label }: choose at least { $limit ->
    [one] { $limit } item
   *[other] { $limit } items
}.
form-error-max-items = { $label }: choose at most { $limit ->
    [one] { $limit } item
   *[other] { $limit } items
}.
form-error-unique-items = { $label }: each item at most once.
form-error-attachment = { $label }: this file was not uploaded for this form, or was already sent. Upload it again.
form-error-attachment-incomplete = { $label }: this file has not finished uploading.
form-error-schema = { $label } is not accepted.
form-error-additional-properties = This form has no such field.
form-error-not-an-object = The form's data must be a JSON object.

## The form's page.

form-submit = Send
form-required = required
form-choose = Choose…
form-errors = { $count ->
    [one] There is a problem with { $count } answer
   *[other] There are problems with { $count } answers
}
form-honeypot = Leave this field empty
form-expired = The form was open for long, or has changed. Check your answers and send it again.
form-sent = Thank you. We have received your message.
form-send-another = Send another

## Files on the form's page: the page's script uploads each one (resumably)
## before the form is sent. $name, $percent and $reason are filled in by the
## script.

form-file-needs-script = Attaching files needs JavaScript.
form-file-uploading = Uploading { $name }: { $percent }%
form-file-attached = { $name } is attached.
form-file-failed = { $name } was not attached: { $reason }
form-file-remove = Remove
form-file-too-many = You can attach at most { $limit ->
    [one] { $limit } file
   *[other] { $limit } files
}.
form-file-kept = A file you attached
form-check-failed = Your browser had not finished its check when the form was sent. Send it again.
form-checking = Checking your browser before sending…

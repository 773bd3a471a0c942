form-error-required = Pole „{ $label }” jest wymagane.
form-error-type = Pole „{ $label }” musi być { $type ->
    [number] liczbą
    [integer] liczbą całkowitą
    [boolean] wartością tak lub nie
    [array] listą
   *[other] tekstem
}.
form-error-max-length = Pole „{ $label }” może mieć najwyżej { $limit ->
    [one] { $limit } znak
    [few] { $limit } znaki
    [many] { $limit } znaków
   *[other] { $limit } znaku
}.
form-error-min-length = Pole „{ $label }” musi mieć co najmniej { $limit ->
    [one] { $limit } znak
    [few] { $limit } znaki
    [many] { $limit } znaków
   *[other] { $limit } znaku
}.
form-error-pattern = Pole „{ $label }” ma niewłaściwą postać.
form-error-format = Pole „{ $label }” nie zawiera poprawnego { $format ->
    [email] adresu e-mail
   *[date] daty
}.
form-error-minimum = Pole „{ $label }” musi wynosić co najmniej { $limit }.
form-error-maximum = Pole „{ $label }” może wynosić najwyżej { $limit }.
form-error-enum = Pole „{ $label }”: wybierz jedną z opcji.
form-error-min-items = Pole „{ $label }”: wybierz co najmniej { $limit ->
    [one] { $limit } pozycję
    [few] { $limit } pozycje
    [many] { $limit } pozycji
   *[other] { $limit } pozycji
}.
form-error-max-items = Pole „{ $label }”: wybierz najwyżej { $limit ->
    [one] { $limit } pozycję
    [few] { $limit } pozycje
    [many] { $limit } pozycji
   *[other] { $limit } pozycji
}.
form-error-unique-items = Pole „{ $label }”: każda pozycja najwyżej raz.
form-error-attachment = Pole „{ $label }”: ten plik nie został przesłany dla tego formularza albo został już wysłany. Prześlij go ponownie.
form-error-attachment-incomplete = Pole „{ $label }”: przesyłanie tego pliku jeszcze się nie zakończyło.
form-error-schema = Wartość pola „{ $label }” nie jest akceptowana.
form-error-additional-properties = Ten formularz nie ma takiego pola.
form-error-not-an-object = Dane formularza muszą być obiektem JSON.

## The form's page.

form-submit = Wyślij
form-required = wymagane
form-choose = Wybierz…
form-errors = { $count ->
    [one] Popraw { $count } odpowiedź
    [few] Popraw { $count } odpowiedzi
    [many] Popraw { $count } odpowiedzi
   *[other] Popraw { $count } odpowiedzi
}
form-honeypot = Zostaw to pole puste
form-expired = Formularz był otwarty zbyt długo albo się zmienił. Sprawdź odpowiedzi i wyślij go ponownie.
form-sent = Dziękujemy. Otrzymaliśmy Twoją wiadomość.
form-send-another = Wyślij kolejną

## Files on the form's page: the page's script uploads each one (resumably)
## before the form is sent. $name, $percent and $reason are filled in by the
## script.

form-file-needs-script = Dołączanie plików wymaga JavaScriptu.
form-file-uploading = Wysyłanie { $name }: { $percent }%
form-file-attached = Dołączono { $name }.
form-file-failed = Nie dołączono { $name }: { $reason }
form-file-remove = Usuń
form-file-too-many = Możesz dołączyć najwyżej { $limit ->
    [one] { $limit } plik
    [few] { $limit } pliki
    [many] { $limit } plików
   *[other] { $limit } pliku
}.
form-file-kept = Dołączony plik
form-check-failed = Przeglądarka nie skończyła sprawdzania, zanim formularz został wysłany. Wyślij go ponownie.
form-checking = Sprawdzanie przeglądarki przed wysłaniem…

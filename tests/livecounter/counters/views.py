from django.db import transaction
from django.db.models import F
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from notifier import changed

from .models import Counter


@require_GET
def counter(request, name):
    value = Counter.objects.filter(name=name).values_list("value", flat=True).first()
    return JsonResponse({"name": name, "value": value or 0})


@csrf_exempt
@require_POST
def increment(request, name):
    Counter.objects.get_or_create(name=name)
    with transaction.atomic():
        Counter.objects.filter(name=name).update(value=F("value") + 1)
        value = Counter.objects.get(name=name).value
        # Published when the transaction commits: no process re-reads before it.
        changed.send(sender=Counter, namespace="counter", key=name, version=value)
    return JsonResponse({"name": name, "value": value})
